"""The test services answer: a missing Redis or PostgreSQL fails here, loudly, instead of skipping."""

from __future__ import annotations

import psycopg
import redis


def test_redis_answers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        key = "relay-test:services:ping"
        client.set(key, b"x", ex=5)
        assert client.get(key) == b"x"
    finally:
        client.close()


def test_postgres_answers_with_a_fresh_database(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert row == (0,)
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (41)")
        assert conn.execute("SELECT x + 1 FROM t").fetchone() == (42,)
