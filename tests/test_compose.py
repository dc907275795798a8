"""docker-compose.yml and the Dockerfile checked against the code, since no Docker engine runs here.

Each check is a function over the parsed files; the tests run them on the real files, and
`test_each_check_catches_its_mistake` runs them on broken copies to prove they can fail.
"""

from __future__ import annotations

import copy
import importlib
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import typer.main
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

import sala.cli
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ("worker", "worker-gpu", "worker-multigpu")
# modules where a worker-side settings class may live (none of them has to exist)
WORKER_SETTINGS_MODULES = ("worker.settings", "worker.config", "worker.agent", "client.config")


def source_folders() -> list[str]:
    """The top-level folders `pip install .` builds the wheel from: each package's and each mapped folder."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name.split(".")[0] for name in config["packages"]} - set(config.get("package-dir", {}))
    return sorted(folders | {path.split("/")[0] for path in config.get("package-dir", {}).values()})


def interpolate(text: str) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` with every variable unset."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)


def load_compose() -> dict:
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text()))


def load_dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


# ---- what the code offers ------------------------------------------------------------------------

def cli():
    """The Typer app as a click-style group (Typer ships its own copy of click, so duck-typed)."""
    return typer.main.get_command(sala.cli.app)


def resolve_command(argv: list[str]):
    """Parse argv as the `sala` console script would; any unknown command or option raises."""
    assert argv and argv[0] == "sala", f"command does not run sala: {argv}"
    args = list(argv[1:])
    command = cli()
    names = ["sala"]
    while hasattr(command, "commands"):
        assert args, f"{' '.join(names)} needs a subcommand"
        name = args.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, f"`{' '.join(names)}` has no command {name!r}"
        command, names = sub, names + [name]
    known = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in known, f"`{' '.join(names)}` has no option {arg}"
    try:
        return command.make_context(" ".join(names), args)
    except Exception as exc:  # the CLI's usage errors (bad value, missing option)
        message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
        raise AssertionError(f"`{' '.join(argv)}`: {message}") from None


def settings_classes_env(module_names: tuple[str, ...]) -> set[str]:
    """Env var names of the pydantic-settings classes in those modules (missing modules skipped)."""
    names = set()
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings:
                prefix = value.model_config.get("env_prefix", "")
                names |= {f"{prefix}{field}".upper() for field in value.model_fields}
    return names


def cli_env(subcommand: str) -> set[str]:
    """Env vars the `sala SUBCOMMAND` options read (`typer.Option(envvar=...)`)."""
    names = set()
    command = cli().commands.get(subcommand)
    for param in command.params if command else ():
        envvar = getattr(param, "envvar", None)
        names |= {envvar} if isinstance(envvar, str) else set(envvar or ())
    return names


def setting_names(service: str) -> set[str]:
    """What a service's process reads: the server its Settings, a worker its options and settings."""
    if service in WORKERS:
        return cli_env("worker") | settings_classes_env(WORKER_SETTINGS_MODULES)
    return {f"SALA_{field.upper()}" for field in Settings.model_fields}


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def mounts(service: dict) -> dict[str, str]:
    """container path → source, for short (`src:dst[:mode]`) and long volume syntax."""
    out = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        out[target] = source
    return out


def server_port(compose: dict) -> int:
    port = option(command_of(compose["services"]["server"]), "--port")
    return int(port) if port is not None else Settings.model_fields["port"].default


def postgres_service(compose: dict) -> str:
    names = [n for n, s in compose["services"].items() if str(s.get("image", "")).startswith("postgres")]
    assert len(names) == 1, f"expected one postgres service, found {names}"
    return names[0]


# ---- the checks ----------------------------------------------------------------------------------

def check_services(compose: dict) -> None:
    services = compose["services"]
    for name in ("postgres", "server", "worker", "worker-gpu"):
        assert name in services, f"service {name!r} is missing"
    assert services["worker-gpu"].get("profiles") == ["gpu"], "the GPU worker must sit behind profile gpu"
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert command_of(services["worker-gpu"]) == command_of(services["worker"])
    multi = services["worker-multigpu"]
    assert multi.get("profiles") == ["multi-gpu"], "the multi-GPU worker must sit behind profile multi-gpu"
    assert multi.get("shm_size"), "NCCL between ranks needs more shared memory than Docker's 64 MB"
    assert option(command_of(multi), "--device") == "cuda"


def check_server_command(compose: dict) -> None:
    argv = command_of(compose["services"]["server"])
    resolve_command(argv)
    assert argv[1] == "server", f"the server service runs {argv}"
    assert option(argv, "--host") == "0.0.0.0", "inside a container the server must bind 0.0.0.0"


def check_worker_command(compose: dict) -> None:
    for name in WORKERS:
        argv = command_of(compose["services"][name])
        assert argv[:2] == ["sala", "worker"], f"{name} runs {argv}"
        resolve_command(argv)


def check_worker_reaches_server(compose: dict) -> None:
    for name in WORKERS:
        url = urlparse(option(command_of(compose["services"][name]), "--server") or "")
        assert url.hostname == "server", f"{name} points at {url.geturl()!r}, not the server service"
        assert url.port == server_port(compose), f"{name} uses port {url.port}, server listens on {server_port(compose)}"
        assert "server" in compose["services"][name].get("depends_on", {}), f"{name} must wait for the server"


def check_env_vars_are_settings(compose: dict, dockerfile: list[tuple[str, str]]) -> None:
    for name, service in compose["services"].items():
        known = setting_names(name)
        for var in environment(service):
            if var.startswith("SALA_"):
                assert var in known, f"{name} sets {var}, which its process does not read"
    known = setting_names("server") | setting_names("worker")
    for word, rest in dockerfile:
        if word == "ENV":
            for var in re.findall(r"(SALA_\w+)=", rest):
                assert var in known, f"the Dockerfile sets {var}, which neither process reads"


def check_ports(compose: dict) -> None:
    server = compose["services"]["server"]
    port = server_port(compose)
    targets = [int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in server.get("ports", [])]
    assert targets == [port], f"server publishes {server.get('ports')}, but listens on {port}"
    health = " ".join(map(str, server["healthcheck"]["test"]))
    assert f":{port}/healthz" in health, f"server healthcheck does not probe :{port}/healthz: {health}"


def check_database_url(compose: dict) -> None:
    services = compose["services"]
    pg_name = postgres_service(compose)
    pg_env = environment(services[pg_name])
    url = make_url(Settings(database_url=environment(services["server"])["SALA_DATABASE_URL"]).database_url)
    assert url.drivername == "postgresql+psycopg", url.drivername
    assert url.host == pg_name, f"database host {url.host!r} is not the postgres service {pg_name!r}"
    assert (url.port or 5432) == 5432
    assert url.username == pg_env.get("POSTGRES_USER", "postgres"), url.username
    assert (url.password or "") == pg_env.get("POSTGRES_PASSWORD", ""), "database password differs"
    assert url.database == pg_env.get("POSTGRES_DB", url.username), url.database
    assert "pg_isready" in " ".join(map(str, services[pg_name]["healthcheck"]["test"]))
    depends = services["server"]["depends_on"][pg_name]
    assert depends.get("condition") == "service_healthy", "server must wait for a healthy postgres"


def check_artifacts_volume(compose: dict) -> None:
    services = compose["services"]
    url = urlparse(environment(services["server"])["SALA_ARTIFACTS_URL"])
    assert url.scheme == "file", f"compose stores artifacts at {url.geturl()}"
    sources = set()
    for name in ("server", *WORKERS):
        own = option(command_of(services[name]), "--artifacts") if name in WORKERS else None
        path = urlparse(own or url.geturl()).path
        assert path == url.path, f"{name} writes artifacts to {path}, the server reads {url.path}"
        assert url.path in mounts(services[name]), f"{name} does not mount a volume at {url.path}"
        sources.add(mounts(services[name])[url.path])
    assert len(sources) == 1, f"server and workers mount different volumes at {url.path}: {sources}"
    assert sources <= set(compose.get("volumes") or {}), f"volume {sources} is not declared"


def check_dockerfile(compose: dict, dockerfile: list[tuple[str, str]]) -> None:
    words = [w for w, _ in dockerfile]
    assert dockerfile[0][0] == "FROM" and dockerfile[0][1].startswith("python:3.11-slim"), dockerfile[0]
    runs = [rest for word, rest in dockerfile if word == "RUN"]
    installs = [r for r in runs if re.search(r"""pip install (-e )?["']?\.(\[|["']|\s|$)""", r)]
    assert installs, "the project is never installed"
    if make_url(environment(compose["services"]["server"])["SALA_DATABASE_URL"]).drivername.endswith("psycopg"):
        assert any(re.search(r"\.\[[^\]]*\bpostgres\b", r) for r in installs), \
            "compose's server talks to PostgreSQL, but the image does not install the postgres extra"
    copied = " ".join(rest for word, rest in dockerfile if word in ("COPY", "ADD"))
    needed = ("pyproject.toml", "README.md", *source_folders())
    for path in needed:
        assert re.search(rf"(^|\s){re.escape(path)}(\s|$)", copied), f"the image lacks {path}"
    exposed = [int(p.split("/")[0]) for word, rest in dockerfile if word == "EXPOSE" for p in rest.split()]
    assert exposed == [server_port(compose)], f"EXPOSE {exposed}, server listens on {server_port(compose)}"
    users = [rest for word, rest in dockerfile if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert words.index("USER") < words.index("CMD")
    cmd = next(rest for word, rest in reversed(dockerfile) if word == "CMD")
    resolve_command(yaml.safe_load(cmd) if cmd.startswith("[") else shlex.split(cmd))


# ---- tests on the real files ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return load_dockerfile()


def test_services(compose):
    check_services(compose)


def test_server_command_exists_in_the_cli(compose):
    check_server_command(compose)


def test_worker_command_exists_in_the_cli(compose):
    check_worker_command(compose)


def test_workers_reach_the_server_service(compose):
    check_worker_reaches_server(compose)


def test_sala_env_vars_are_settings(compose, dockerfile):
    check_env_vars_are_settings(compose, dockerfile)


def test_published_port_matches_the_server_port(compose):
    check_ports(compose)


def test_database_url_matches_the_postgres_service(compose):
    check_database_url(compose)


def test_artifacts_volume_is_shared_at_the_configured_path(compose):
    check_artifacts_volume(compose)


def test_dockerfile(compose, dockerfile):
    check_dockerfile(compose, dockerfile)


def _set(path: str, value):
    def mutate(compose: dict, dockerfile: list) -> None:
        *parents, last = path.split("/")
        node = compose
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


def _dockerfile(word: str, new: str):
    def mutate(compose: dict, dockerfile: list) -> None:
        for index, (w, _) in enumerate(dockerfile):
            if w == word:
                dockerfile[index] = (word, new)
    return mutate


MISTAKES = {
    "unknown subcommand": (check_server_command, _set("services/server/command/1", "serve")),
    "unknown option": (check_server_command, _set("services/server/command/4", "--portt")),
    "bad option value": (check_server_command, _set("services/server/command/5", "eighty")),
    "loopback in a container": (check_server_command, _set("services/server/command/3", "127.0.0.1")),
    "worker not sala": (check_worker_command, _set("services/worker/command/1", "work")),
    "worker wrong host": (check_worker_reaches_server, _set("services/worker/command/3", "http://api:8000")),
    "worker wrong port": (check_worker_reaches_server, _set("services/worker/command/3", "http://server:9000")),
    "unknown env var": (lambda c, d: check_env_vars_are_settings(c, d),
                        _set("services/server/environment/SALA_DATABSE_URL", "x")),
    "unknown Dockerfile env": (lambda c, d: check_env_vars_are_settings(c, d), _dockerfile("ENV", "SALA_NOPE=1")),
    "port mismatch": (check_ports, _set("services/server/ports/0", "8000:8080")),
    "db host": (check_database_url, _set("services/server/environment/SALA_DATABASE_URL",
                                         "postgresql://postgres:sala@db:5432/sala")),
    "db user": (check_database_url, _set("services/server/environment/SALA_DATABASE_URL",
                                         "postgresql://sala:sala@postgres:5432/sala")),
    "db name": (check_database_url, _set("services/server/environment/SALA_DATABASE_URL",
                                         "postgresql://postgres:sala@postgres:5432/other")),
    "db not awaited": (check_database_url, _set("services/server/depends_on/postgres/condition", "service_started")),
    "artifacts elsewhere": (check_artifacts_volume, _set("services/worker/volumes/0", "artifacts:/data")),
    "artifacts other volume": (check_artifacts_volume, _set("services/worker/volumes/0", "other:/artifacts")),
    "artifacts url differs": (check_artifacts_volume, _set("services/worker/command",
                                                           ["sala", "worker", "--artifacts", "file:///ckpt"])),
    "server setting on a worker": (lambda c, d: check_env_vars_are_settings(c, d),
                                   _set("services/worker/environment", {"SALA_ARTIFACTS_URL": "file:///x"})),
    "gpu not in a profile": (check_services, _set("services/worker-gpu/profiles", None)),
    "multi-gpu without shared memory": (check_services, _set("services/worker-multigpu/shm_size", None)),
    "no install": (check_dockerfile, _dockerfile("RUN", "echo")),
    "no postgres driver": (check_dockerfile, lambda c, d: d.__setitem__(
        next(i for i, (w, r) in enumerate(d) if "postgres" in r), ("RUN", "pip install ."))),
    "migrations not copied": (check_dockerfile, lambda c, d: d.remove(("COPY", "migrations ./migrations"))),
    "expose mismatch": (check_dockerfile, _dockerfile("EXPOSE", "8080")),
    "root": (check_dockerfile, _dockerfile("USER", "root")),
    "bad CMD": (check_dockerfile, _dockerfile("CMD", '["sala", "serve"]')),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_check_catches_its_mistake(compose, dockerfile, mistake):
    check, mutate = MISTAKES[mistake]
    broken_compose, broken_dockerfile = copy.deepcopy(compose), list(dockerfile)
    mutate(broken_compose, broken_dockerfile)
    arity = check.__code__.co_argcount
    with pytest.raises(AssertionError):
        check(broken_compose, broken_dockerfile) if arity == 2 else check(broken_compose)
