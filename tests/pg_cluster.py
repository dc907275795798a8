"""A PostgreSQL cluster of a test's own, which the test may stop and start: initdb and pg_ctl on a
free port and a temporary data directory. The machine's shared server is never touched.

`Cluster.binaries()` finds `pg_ctl` and `initdb` (PATH, else Debian's /usr/lib/postgresql/N/bin)
or returns None, so a test can skip saying why. initdb refuses to run as root: there the cluster
is made and run as the `postgres` user (`runuser`), which then owns the data directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.live import free_port


class Cluster:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="sala-pg-"))
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @staticmethod
    def binaries() -> Path | None:
        found = shutil.which("pg_ctl")
        if found and shutil.which("initdb"):
            return Path(found).resolve().parent
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
        return versions[-1].parent if versions else None

    @staticmethod
    def unusable() -> str | None:
        """Why no cluster can be made here, or None."""
        if Cluster.binaries() is None:
            return "PostgreSQL's pg_ctl and initdb are not installed (Debian: postgresql)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root without a postgres user to run initdb as"
        return None

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        subprocess.run([*self.as_user, str(self.bindir / tool), *args], check=True, timeout=timeout,
                       capture_output=True, text=True)

    def init(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.SubprocessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)
