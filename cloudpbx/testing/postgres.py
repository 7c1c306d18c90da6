"""A throwaway PostgreSQL server for the test suites (issue 4 part 5).

Rules:
- The server is the Debian one (`make debian-packages` installs `postgresql`): `initdb`
  and `pg_ctl` from `/usr/lib/postgresql/<newest version>/bin`, or from the directory in
  `$SOFTSWITCH_POSTGRES_BIN`. Nothing else on the machine is touched: no system cluster,
  no service, no `pg_ctlcluster`.
- One server per test run, shared by every suite: `shared_server()` starts it on first
  use and stops it when the last user lets go (the conftests' session fixtures), with an
  `atexit` hook as a backstop. It lives in a fresh temporary directory (data, Unix
  socket, log) in /dev/shm when that is usable, else in $TMPDIR or /tmp
  ($SOFTSWITCH_POSTGRES_TMPDIR overrides), listens on 127.0.0.1 only, on a port that was
  free a moment before (a lost race is retried on another port), with fsync off: its
  data is thrown away.
- PostgreSQL refuses to run as root: under root every server command runs as the
  `postgres` system user (`runuser -u postgres`), which owns the temporary directory.
- Clients log in as `softswitch` with a random password (scram-sha-256, the Debian
  default), so a URL carries credentials exactly as a production one does.
- Stopping is by the server's own pid file: `pg_ctl stop -m immediate`, then, if that
  fails, SIGKILL to the postmaster PID read from `postmaster.pid`; never by process name.
  The directory is removed afterwards.
- Anything that prevents a server (package missing, initdb or start failing, no
  connection before the deadline) raises `PostgresUnavailable` with the reason and the
  server log, so the PostgreSQL half of the suite FAILS rather than being skipped.
- Per-test databases: `create_database` (optionally from a template, which copies a
  migrated and provisioned store in milliseconds) and `drop_database` (WITH FORCE).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = [
    "DATABASE_USER",
    "PostgresServer",
    "PostgresUnavailable",
    "find_binaries",
    "shared_server",
]

DATABASE_USER = "softswitch"
SYSTEM_USER = "postgres"
"""The Debian package's system account; the server runs as it when we are root."""
BINARY_ROOT = Path("/usr/lib/postgresql")
START_DEADLINE = 60.0
"""Seconds for `pg_ctl start` and the first accepted connection (a slow CI machine)."""
TMPFS_MINIMUM = 512 * 1024 * 1024
"""Free bytes /dev/shm needs for the server to live there (a few dozen MB are used)."""
START_ATTEMPTS = 3
"""Ports tried: another process may take a free port between our probe and the bind."""


class PostgresUnavailable(RuntimeError):
    """No throwaway PostgreSQL server could be had; the message says why."""


def find_binaries() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`.

    Raises:
        PostgresUnavailable: the Debian `postgresql` package is not installed.
    """
    configured = os.environ.get("SOFTSWITCH_POSTGRES_BIN")
    candidates: list[Path] = []
    if configured:
        candidates.append(Path(configured))
    elif BINARY_ROOT.is_dir():

        def version(path: Path) -> tuple[int, ...]:
            return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)

        candidates += sorted(BINARY_ROOT.iterdir(), key=version, reverse=True)
        candidates = [path / "bin" for path in candidates]
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in "
        f"{configured or BINARY_ROOT / '<version>/bin'}: install the Debian package "
        "`postgresql` (`make debian-packages` does) or set $SOFTSWITCH_POSTGRES_BIN"
    )


def _base_directory() -> str | None:
    """Where the server's directory goes: RAM when possible, else the temporary directory.

    On a disk, CREATE DATABASE takes ~0.3 s even with fsync off (a new directory tree
    per database); on tmpfs ~0.02 s, and the suite creates one database per test.
    """
    configured = os.environ.get("SOFTSWITCH_POSTGRES_TMPDIR")
    if configured:
        return configured
    shm = Path("/dev/shm")
    try:
        if (
            shm.is_dir()
            and os.access(shm, os.W_OK | os.X_OK)
            and shutil.disk_usage(shm).free >= TMPFS_MINIMUM
        ):
            return str(shm)
    except OSError:
        pass
    return None  # tempfile's choice ($TMPDIR, /tmp, ...)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One running throwaway server; build it with `PostgresServer.start()`."""

    binaries: Path
    directory: Path
    port: int
    password: str
    run_as: str | None
    """The system user the server commands run as (None: the current user)."""
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data_directory(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    # --- starting and stopping ---------------------------------------------------------------

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb into a new temporary directory and start a server on a free port.

        Raises:
            PostgresUnavailable: with the reason and the end of the server log.
        """
        binaries = find_binaries()
        run_as = SYSTEM_USER if os.geteuid() == 0 else None
        if run_as is not None:
            try:
                account = pwd.getpwnam(run_as)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root, and there is no `{run_as}` system user to run "
                    "PostgreSQL as (the Debian `postgresql` package creates it)"
                ) from None
        directory = Path(tempfile.mkdtemp(prefix="softswitch-pg-", dir=_base_directory()))
        server = cls(binaries, directory, 0, secrets.token_hex(16), run_as)
        try:
            if run_as is not None:
                os.chown(directory, account.pw_uid, account.pw_gid)
                try:
                    server._check_directory_is_reachable()
                except PostgresUnavailable:
                    # The base is private to root (say $TMPDIR under /root): use /tmp.
                    shutil.rmtree(directory, ignore_errors=True)
                    directory = Path(tempfile.mkdtemp(prefix="softswitch-pg-", dir="/tmp"))
                    server.directory = directory
                    os.chown(directory, account.pw_uid, account.pw_gid)
                    server._check_directory_is_reachable()
            server._initdb()
            for attempt in range(1, START_ATTEMPTS + 1):
                server.port = _free_port()
                try:
                    server._pg_ctl_start()
                    break
                except PostgresUnavailable:
                    if attempt == START_ATTEMPTS or "could not bind" not in server._log_tail():
                        raise
            server._wait_until_accepting()
        except BaseException:
            server.stop()
            raise
        atexit.register(server.stop)
        return server

    def _command(self, *arguments: str | Path) -> list[str]:
        command = [str(argument) for argument in arguments]
        if self.run_as is None:
            return command
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
        if runuser is None:
            raise PostgresUnavailable("running as root, and `runuser` (util-linux) is missing")
        return [runuser, "-u", self.run_as, "--", *command]

    def _run(self, what: str, *arguments: str | Path, timeout: float) -> None:
        """Run a server command; its output goes to a file (a pipe could be inherited)."""
        command = self._command(*arguments)
        output_path = self.directory / f"{what}.out"
        with open(output_path, "wb") as output:
            try:
                completed = subprocess.run(
                    command,
                    cwd=self.directory,  # the `postgres` user may not enter ours
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                raise PostgresUnavailable(f"{what} failed: {error}") from error
        if completed.returncode != 0:
            text = output_path.read_text(encoding="utf-8", errors="replace")
            raise PostgresUnavailable(
                f"{what} exited {completed.returncode}:\n{text}\n{self._log_tail()}"
            )

    def _check_directory_is_reachable(self) -> None:
        """The `postgres` user must be able to enter the temporary directory."""
        self._run("access-check", "test", "-w", self.directory, timeout=30)

    def _initdb(self) -> None:
        password_file = self.directory / "password"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        if self.run_as is not None:
            shutil.chown(password_file, self.run_as)
        self._run(
            "initdb",
            self.binaries / "initdb",
            "--pgdata",
            self.data_directory,
            "--username",
            DATABASE_USER,
            "--pwfile",
            password_file,
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",  # C collation: the same order on every machine
            "--no-sync",
            timeout=120,
        )
        password_file.unlink()

    def _pg_ctl_start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.directory}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            "pg_ctl-start",
            self.binaries / "pg_ctl",
            "start",
            "--pgdata",
            self.data_directory,
            "--log",
            self.log_file,
            "--wait",
            "--timeout",
            str(int(START_DEADLINE)),
            "-o",
            options,
            timeout=START_DEADLINE + 10,
        )

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                with self.connect():
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"no connection to 127.0.0.1:{self.port} within {START_DEADLINE:.0f} s:"
                        f" {error}\n{self._log_tail()}"
                    ) from error
                time.sleep(0.1)

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "server log:\n" + "\n".join(text.splitlines()[-lines:])

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data_directory / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first_line)
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the server (immediate: its data is thrown away) and remove its directory.

        Idempotent; never raises (it runs in teardown and at exit).
        """
        if not self.directory.exists():
            return
        pid = self._postmaster_pid()
        if pid is not None:
            try:
                self._run(
                    "pg_ctl-stop",
                    self.binaries / "pg_ctl",
                    "stop",
                    "--pgdata",
                    self.data_directory,
                    "--mode",
                    "immediate",
                    "--wait",
                    "--timeout",
                    "30",
                    timeout=40,
                )
            except PostgresUnavailable:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)  # the postmaster, by its own pid file
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- databases ---------------------------------------------------------------------------

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this server (psycopg 3 driver)."""
        return (
            f"postgresql+psycopg://{DATABASE_USER}:{self.password}"
            f"@127.0.0.1:{self.port}/{database}"
        )

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit administration connection (CREATE/DROP DATABASE need one)."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=DATABASE_USER,
            password=self.password,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def new_database_name(self, prefix: str = "test") -> str:
        with self._lock:
            return f"{prefix}_{next(self._names)}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create `name` (empty, or a copy of `template`) and return its URL.

        A template must have no open connection (dispose its engines first).
        """
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template or "template0")
        )
        with self.connect() as connection:
            connection.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, closing whatever connection a test left open to it."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)
        )
        with self.connect() as connection:
            connection.execute(statement)

    @contextlib.contextmanager
    def temporary_database(self, template: str | None = None) -> Iterator[str]:
        """A new database (a copy of `template` if given) for the block; its URL."""
        name = self.new_database_name()
        url = self.create_database(name, template)
        try:
            yield url
        finally:
            self.drop_database(name)


_shared_lock = threading.Lock()
_shared: PostgresServer | None = None
_shared_error: PostgresUnavailable | None = None
_shared_users = 0


@contextlib.contextmanager
def shared_server() -> Iterator[PostgresServer]:
    """The run's server, started on first use and stopped when the last user leaves.

    A failed start is remembered, so each later user fails at once with the same reason
    instead of trying initdb again.
    """
    global _shared, _shared_error, _shared_users
    with _shared_lock:
        if _shared_error is not None:
            raise PostgresUnavailable(str(_shared_error))
        if _shared is None:
            try:
                _shared = PostgresServer.start()
            except PostgresUnavailable as error:
                _shared_error = error
                raise
        _shared_users += 1
        server = _shared
    try:
        yield server
    finally:
        with _shared_lock:
            _shared_users -= 1
            if _shared_users == 0:
                _shared = None
                server.stop()
