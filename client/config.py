"""Where the server is and which token to send: a flag, else `SALA_URL` / `SALA_TOKEN`, else the
config file (`SALA_CONFIG`, default `~/.config/sala/config.toml`, keys `url` and `token`), else the
local server without a token."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    return Path(os.environ.get("SALA_CONFIG") or Path.home() / ".config" / "sala" / "config.toml")


def read_config(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"url", "token"})
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} (the keys are url and token)")
    return {k: str(v) for k, v in data.items()}


def resolve(url: str | None = None, token: str | None = None) -> tuple[str, str | None]:
    """The URL and token to use, each from the first place that gives one."""
    file = read_config()
    url = url or os.environ.get("SALA_URL") or file.get("url") or DEFAULT_URL
    token = token or os.environ.get("SALA_TOKEN") or file.get("token") or None
    return url, token
