"""Server settings, read once from `SALA_*` environment variables."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALA_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./.sala/sala.db",
        description="SQLAlchemy URL; SQLite for one machine, postgresql+psycopg:// for many.",
    )
    host: str = Field("127.0.0.1", description="Address `sala server` binds to.")
    port: int = Field(8000, ge=1, le=65535)
    artifacts_url: str = Field(
        "file://./.sala/artifacts", description="fsspec URL under which checkpoints are stored."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted.")
    lease_seconds: float = Field(30.0, gt=0, description="How long a claim lives without a heartbeat.")
    heartbeat_seconds: float = Field(1.0, gt=0, description="How often workers are asked to heartbeat.")
    stop_deadline_seconds: float = Field(
        60.0, gt=0, description="A worker that has not honoured a stop by then is fenced."
    )
    step_horizon: int = Field(
        20_000, ge=100, description="Raw step points kept per run; older ones are rolled up.")
    step_rollup_bucket: int = Field(100, ge=2, description="Steps averaged into one rolled-up point.")
    reaper_seconds: float = Field(1.0, gt=0, description="How often expired leases are swept.")
    log_lines: int = Field(
        10_000, ge=100, description="Log lines kept per run attempt; older ones are dropped and counted.")
    webhook_retry_seconds: float = Field(
        2.0, gt=0, description="First retry of a failed webhook delivery; doubled per try, 8 tries.")
    allowed_hosts: str = Field(
        "", description="More names a loopback-bound server answers to (comma-separated), e.g. a proxy's.")
    cors_origins: str = Field(
        "", description="Web origins (comma-separated) whose pages may call the API; none by default.")
    read_cache_bytes: int = Field(
        64 * 2**20, ge=0, description="Memory for encoded poll answers kept per server process (server/reads.py).")
    processes: int = Field(
        1, ge=1, le=64, description="Server processes (`sala server --processes`), each with its own admission control.")
    log_level: str = Field("info")

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres_driver(cls, url: str) -> str:
        """psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2."""
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    @property
    def binds_loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def extra_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/").lower() for o in self.cors_origins.split(",") if o.strip())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()
