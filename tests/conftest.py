"""Shared fixtures. Services are real: Redis and PostgreSQL are found or started (tests/services.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

REPO = Path(__file__).resolve().parent.parent
AUDIO_DIR = REPO / "tests" / "audio"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with services.redis_service() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with services.postgres_service() as url:
        yield url


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    return AUDIO_DIR
