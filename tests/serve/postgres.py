"""A throwaway PostgreSQL server for tests: initdb into a fresh directory, start, stop.

Uses the PostgreSQL binaries on PATH or the newest under /usr/lib/postgresql/*/bin. As root
(PostgreSQL refuses to run as root) the server runs as the ``postgres`` OS user, so the base
directory and every directory above it must be traversable by that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg

SUPERUSER = "lmrec"
DATABASE = "lmrec"
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
    "/usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql), "
    "or set LMREC_SKIP_POSTGRES=1 to skip the PostgreSQL tests"
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl.

    Raises:
        PostgresUnavailable: With installation instructions.
    """
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).parent / "initdb").exists():
        return Path(on_path).parent
    candidates = [
        d
        for d in Path("/usr/lib/postgresql").glob("*/bin")
        if (d / "initdb").exists() and (d / "pg_ctl").exists()
    ]

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name)) or (0,)

    if not candidates:
        raise PostgresUnavailable(INSTALL_HINT)
    return max(candidates, key=version)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server; ``url`` names its empty ``lmrec`` database (user ``lmrec``)."""

    bindir: Path
    data_dir: Path
    port: int
    run_as: list[str]

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``lmrec`` database."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of another database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit maintenance connection (CREATE/DROP DATABASE need one)."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database, autocommit=True
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended)."""
        pg_ctl = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data_dir)]
        _run([*pg_ctl, "-m", "fast", "-w", "stop"])

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )


def start_postgres(base_dir: Path) -> PostgresServer:
    """initdb into ``base_dir/data`` and start a server on a free port of 127.0.0.1.

    The unix socket goes to ``base_dir/sock`` and the server log to ``base_dir/postgres.log``.

    Raises:
        PostgresUnavailable: No PostgreSQL binaries.
        RuntimeError: initdb or the start failed (with the server log).
    """
    bindir = find_bindir()
    base_dir = Path(base_dir).resolve()
    data_dir, sock_dir, log = base_dir / "data", base_dir / "sock", base_dir / "postgres.log"
    base_dir.mkdir(parents=True, exist_ok=True)
    sock_dir.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "running as root needs a 'postgres' OS user to run the server"
            ) from None
        for path in (base_dir, sock_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    # --no-sync: a throwaway cluster need not be flushed at creation; the server itself runs
    # with fsync=on. --locale=C: valid with UTF8 whatever locales the machine has.
    initdb = [*run_as, str(bindir / "initdb"), "-D", str(data_dir), "-A", "trust"]
    _run([*initdb, "-U", SUPERUSER, "--encoding", "UTF8", "--locale", "C", "--no-sync"])
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data_dir)]
    for _attempt in range(3):  # the free port may be taken before the server binds it
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock_dir} -c fsync=on"
        started = subprocess.run(
            [*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if started.returncode == 0:
            break
    else:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}{started.stderr}\n{tail}")
    server = PostgresServer(bindir=bindir, data_dir=data_dir, port=port, run_as=run_as)
    try:
        with server.connect() as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    except BaseException:
        server.stop()
        raise
    return server
