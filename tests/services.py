"""Find, or start, the Redis and PostgreSQL servers the tests talk to.

Order of preference for each service:
1. the URL in the environment (``TEST_REDIS_URL``/``REDIS_URL``, ``TEST_DATABASE_URL``/``DATABASE_URL``);
2. the standard local port (127.0.0.1:6379, 127.0.0.1:5432 with trust auth), as on CI;
3. a private throwaway instance when the server binaries are installed;
otherwise a ``ServiceUnavailable`` that says exactly what is missing. Tests never skip on it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse


class ServiceUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def _wait_port(host: str, port: int, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if _port_open(host, port):
            return True
        time.sleep(0.05)  # polling a child process's port: there is no event to wait on
    return False


@dataclass
class Started:
    url: str
    cleanup: list[subprocess.Popen[bytes]] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.cleanup:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def redis_url_candidates() -> list[str]:
    env = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    return [env] if env else ["redis://127.0.0.1:6379/0"]


@contextlib.contextmanager
def redis_service() -> Iterator[str]:
    for url in redis_url_candidates():
        u = urlparse(url)
        if _port_open(u.hostname or "127.0.0.1", u.port or 6379):
            yield url
            return
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable(
            f"Redis is not reachable at {redis_url_candidates()[0]} and redis-server is not installed. "
            "Start Redis, set TEST_REDIS_URL, or install it (Debian: apt-get install redis-server)."
        )
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="relay-test-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = Started(f"redis://127.0.0.1:{port}/0", [proc], [tmp])
    try:
        if not _wait_port("127.0.0.1", port, 10):
            raise ServiceUnavailable(f"a private redis-server on port {port} did not start")
        yield started.url
    finally:
        started.stop()


def postgres_url_candidates() -> list[str]:
    env = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if env and env.startswith("postgres"):
        return [env]
    return ["postgresql://postgres@127.0.0.1:5432/postgres"]


def _pg_bindir() -> str | None:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return dirs[-1] if dirs and os.path.exists(os.path.join(dirs[-1], "initdb")) else None


@contextlib.contextmanager
def postgres_service() -> Iterator[str]:
    """Yield the URL of a fresh, empty database; it is dropped afterwards."""
    import psycopg

    admin_url: str | None = None
    for url in postgres_url_candidates():
        try:
            with psycopg.connect(url, connect_timeout=3):
                admin_url = url
                break
        except psycopg.OperationalError:
            continue
    started: Started | None = None
    if admin_url is None:
        started = _start_private_postgres()
        admin_url = started.url
    name = f"relay_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        u = urlparse(admin_url)
        yield u._replace(path=f"/{name}").geturl()
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if started is not None:
            started.stop()


def _start_private_postgres() -> Started:
    bindir = _pg_bindir()
    if bindir is None:
        raise ServiceUnavailable(
            f"PostgreSQL is not reachable at {postgres_url_candidates()[0]} and initdb is not installed. "
            "Start PostgreSQL, set TEST_DATABASE_URL, or install it (Debian: apt-get install postgresql)."
        )
    tmp = tempfile.mkdtemp(prefix="relay-test-pg-")
    run_as: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root; hand the directory to the postgres system user.
        shutil.chown(tmp, user="postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(tmp, "data")
    subprocess.run(
        [*run_as, os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    proc = subprocess.Popen(
        [*run_as, os.path.join(bindir, "postgres"), "-D", data, "-p", str(port), "-h", "127.0.0.1", "-k", tmp],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = Started(f"postgresql://postgres@127.0.0.1:{port}/postgres", [proc], [tmp])
    if not _wait_port("127.0.0.1", port, 30):
        started.stop()
        raise ServiceUnavailable(f"a private PostgreSQL on port {port} did not start")
    return started
