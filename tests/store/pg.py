"""Throwaway databases on the test PostgreSQL server (each test's store starts from nothing)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg


def database_url_on(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


class PgDatabases:
    """Creates throwaway databases on the test PostgreSQL server and drops them at the end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    def create(self) -> str:
        name = f"relay_store_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return database_url_on(self.server_url, name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        for name in self.created:
            self.drop(database_url_on(self.server_url, name))
        self.created.clear()


def terminate_connections(server_url: str, url: str, deadline_s: float = 5.0) -> None:
    """Kill every server process serving the database at ``url``, and wait until they are gone."""
    import time

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        deadline = time.monotonic() + deadline_s
        # There is no event for "the backend is gone"; poll the server's own view, bounded.
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise AssertionError(f"the backends of {name} did not go away")
            time.sleep(0.02)
