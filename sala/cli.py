"""The `sala` command line: one Typer app with a sub-app per area."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from sala.runs_cli import app as runs_app
from worker.data.cli import app as data_app
from worker.eval_cli import eval_command
from worker.export_cli import export_command
from worker.recipe_cli import app as recipe_app
from worker.train_cli import predict_command, train_command

app = typer.Typer(no_args_is_help=True, help="Sala: steer Khmer OCR training runs over HTTP.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens and their roles.")
app.add_typer(recipe_app, name="recipe", help="Write and check training recipes.")
app.add_typer(data_app, name="data", help="Look at training data before training.")
app.command("train")(train_command)
app.command("predict")(predict_command)
app.command("eval")(eval_command)
app.command("export")(export_command)
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(tokens_app, name="tokens")

log = logging.getLogger("sala.server")

Host = Annotated[str | None, typer.Option(help="Address to bind (default SALA_HOST or 127.0.0.1).")]
Port = Annotated[int | None, typer.Option(help="Port to bind (default SALA_PORT or 8000).")]


def _settings(host: str | None = None, port: int | None = None):
    from server.settings import Settings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    return Settings(**overrides)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database (SALA_DATABASE_URL) up to REVISION."""
    from server import migrate

    settings = _settings()
    migrate.upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}: {_redact(settings.database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Migrate the database down to REVISION (data in dropped tables is lost)."""
    from server import migrate

    migrate.downgrade(_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's current and the code's head revision."""
    from server import migrate
    from server.db import make_engine

    settings = _settings()
    engine = make_engine(settings.database_url)
    typer.echo(f"current: {migrate.current_revision(engine)}  head: {migrate.head_revision(settings.database_url)}")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="viewer | operator | worker | admin")],
    name: Annotated[str, typer.Option(help="Who or what holds the token.")],
) -> None:
    """Create a token and print it once; only its hash is stored."""
    from server import auth

    if role not in auth.ROLES:
        typer.echo(f"error: --role must be one of {', '.join(auth.ROLES)}", err=True)
        raise typer.Exit(2)
    with _session() as db, db.begin():
        row, token = auth.create_token(db, name, role)
    typer.echo(token)
    typer.echo(f"token {row.id} ({role}, {name}) created; it is shown only this once.", err=True)


@tokens_app.command("list")
def tokens_list() -> None:
    """List tokens (never their secrets)."""
    from server import auth

    with _session() as db:
        for t in auth.list_tokens(db):
            state = "revoked" if t.revoked_at else "active"
            typer.echo(f"{t.id}\t{t.role}\t{t.name}\t{t.prefix}…\t{state}")


@tokens_app.command("revoke")
def tokens_revoke(token_id: int) -> None:
    """Revoke a token by id."""
    from server import auth
    from server.errors import NotFound

    try:
        with _session() as db, db.begin():
            auth.revoke_token(db, token_id)
    except NotFound as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"token {token_id} revoked")


Processes = Annotated[int | None, typer.Option(
    min=1, max=64, help="Server processes sharing the port, each with its own admission control "
    "(default SALA_PROCESSES or 1; about one per core on a machine of its own: docs/PERFORMANCE.md).")]


@app.command()
def server(host: Host = None, port: Port = None, processes: Processes = None) -> None:
    """Migrate the database, then serve the API (and dashboard)."""
    settings = _settings(host, port)
    _prepare(settings)
    _serve(settings, processes or settings.processes)


@app.command()
def up(host: Host = None, port: Port = None,
       workers: Annotated[int, typer.Option(min=0, max=64, help="Worker processes to start.")] = 1,
       processes: Annotated[int | None, typer.Option(
           min=1, max=64, help="Server processes (default: half the cores, 1 to 4).")] = None) -> None:
    """One machine: migrate, serve the API and run N workers.

    Ctrl-C checkpoints and re-queues running runs, then stops the workers and the server."""
    from server.processes import default_processes
    from server.supervisor import run_stack

    settings = _settings(host, port)
    _prepare(settings)
    raise typer.Exit(run_stack(settings, workers, processes or default_processes()))


@app.command()
def worker(
    server_url: Annotated[str, typer.Option("--server", envvar="SALA_SERVER", help="Server base URL.")]
    = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(envvar="SALA_TOKEN", help="A worker-role token.")] = None,
    name: Annotated[str | None, typer.Option(help="Worker name (default: host name and pid).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (default: recipe's choice).")] = None,
    artifacts: Annotated[str | None, typer.Option(help="Checkpoint store URL (default: the server's).")] = None,
    once: Annotated[bool, typer.Option(help="Exit after one run.")] = False,
    nodes: Annotated[int, typer.Option(min=1, max=64, help="Machines in this worker group (one `sala worker` "
                                       "on each); runs spanning them use torchrun's rendezvous.")] = 1,
    node_rank: Annotated[int, typer.Option(min=0, help="This machine's place in the group; 0 claims runs.")] = 0,
    rdzv: Annotated[str | None, typer.Option(help="HOST:PORT of node 0's rendezvous (with --nodes > 1).")] = None,
    processes_per_node: Annotated[int | None, typer.Option(
        min=1, max=64, help="Ranks each machine starts (default: its GPUs; on CPU any, 1 in a group).")] = None,
    collective_timeout: Annotated[float, typer.Option(
        min=1, help="Seconds a collective may wait before the group restarts from its checkpoint.")] = 300.0,
) -> None:
    """Claim runs from a server and train them, until stopped (Ctrl-C re-queues the current run)."""
    import platform

    from worker.agent import Agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = Agent(server_url, token, name or f"{platform.node()}-{os.getpid()}", artifacts_url=artifacts,
                  device=device, once=once, nodes=nodes, node_rank=node_rank, rdzv=rdzv,
                  processes_per_node=processes_per_node, collective_timeout_s=collective_timeout)
    agent.install_signal_handlers()
    agent.run_forever()


def _prepare(settings) -> None:
    """Migrate, and refuse to expose an unauthenticated server beyond loopback."""
    from server import auth, migrate
    from server.db import make_engine, make_sessionmaker

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as db:
        tokens = auth.active_token_count(db)
    engine.dispose()
    if tokens == 0 and not settings.binds_loopback:
        typer.echo(f"error: refusing to serve on {settings.host} without authentication. Create a token "
                   "first (`sala tokens create --role admin --name you`) or bind 127.0.0.1.", err=True)
        raise typer.Exit(2)
    if tokens == 0:
        log.warning("authentication is OFF: no API tokens exist and the server binds loopback (%s); "
                    "anyone on this machine can control runs. Create a token to turn it on.", settings.host)


def _serve(settings, processes: int) -> None:
    from server.processes import serve

    serve(settings, processes)


def _session():
    """A command's own session on a migrated database: commands run apart from any server. It takes
    SQLite's write lock up front, as the server's writers do: a transaction that reads and then
    writes while a server touches the same token table would otherwise fail as "database is locked"."""
    from server import migrate
    from server.db import make_engine, make_sessionmaker, writer

    settings = _settings()
    migrate.upgrade(settings.database_url)
    return make_sessionmaker(writer(make_engine(settings.database_url)))()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def main() -> None:  # pragma: no cover - console entry convenience
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
