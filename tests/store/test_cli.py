"""`realtime-relay tenants …` end to end, on both dialects: what an operator types and sees."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from relay.cli import main
from relay.store.db import open_database
from relay.store.tenants import Tenants

KEY = re.compile(r"^rr_live_[A-Za-z0-9_-]{43}$", re.MULTILINE)


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    # In a thread: the CLI runs its own event loop (asyncio.run), as it does from a shell.
    code = await asyncio.to_thread(main, ["tenants", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def test_create_list_add_key_revoke(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    code, out, _ = await _cli(capsys, "list")
    assert code == 0 and "no tenants" in out and "local development mode" in out

    code, out, _ = await _cli(capsys, "create", "Acme Corp", "--max-sessions", "3", "--budget", "25.00")
    assert code == 0
    keys = KEY.findall(out)
    assert len(keys) == 1 and "shown only now" in out and "acme-corp" in out
    key = keys[0]

    code, out, _ = await _cli(capsys, "create", "Ops", "--admin", "--json")
    created = orjson.loads(out)
    assert code == 0 and created["tenant"]["admin"] is True and KEY.match(created["api_key"])

    code, out, _ = await _cli(capsys, "add-key", "acme-corp", "--json")
    second = orjson.loads(out)
    assert code == 0 and second["api_key"] != key

    code, out, _ = await _cli(capsys, "list")
    assert code == 0 and "acme-corp" in out and "max_sessions=3" in out and "budget=$25.00" in out
    assert key not in out and second["api_key"] not in out and not KEY.search(out)
    assert f"{key[:12]}…{key[-4:]}" in out

    code, out, _ = await _cli(capsys, "list", "--json")
    listed = {t["id"]: t for t in orjson.loads(out)}
    assert len(listed["acme-corp"]["keys"]) == 2 and listed["ops"]["admin"] is True
    first_key_id = next(k["id"] for k in listed["acme-corp"]["keys"] if k["id"] != second["key_id"])

    code, out, _ = await _cli(capsys, "revoke", first_key_id)
    assert code == 0 and f"revoked API key {first_key_id}" in out
    code, out, _ = await _cli(capsys, "revoke", "ops")
    assert code == 0 and "revoked tenant ops" in out

    code, _, err = await _cli(capsys, "revoke", "nobody")
    assert code == 1 and "no tenant or API key 'nobody'" in err
    code, _, err = await _cli(capsys, "create", "Acme Corp")
    assert code == 1 and "already exists" in err
    code, _, err = await _cli(capsys, "add-key", "ops")
    assert code == 1 and "revoked" in err
    code, out, _ = await _cli(capsys, "update", "acme-corp", "--budget", "none", "--max-sessions", "default")
    assert code == 0 and "max_sessions=default budget=unlimited" in out

    # What the CLI did is what the store holds.
    db = await open_database(database_url)
    try:
        tenants = Tenants(db)
        acme = await tenants.authenticate(key)
        assert acme is not None and acme.key.revoked
        live = await tenants.authenticate(second["api_key"])
        assert live is not None and live.tenant.id == "acme-corp" and not live.key.revoked
        assert live.tenant.budget_usd is None and live.tenant.max_sessions is None
        ops = await tenants.get("ops")
        assert ops is not None and not ops.active
    finally:
        await db.close()


async def test_bad_arguments_are_refused_before_touching_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    for argv in (["create", "x", "--budget", "0.1e-12"], ["create", "x", "--max-sessions", "-2"]):
        with pytest.raises(SystemExit) as exited:
            await asyncio.to_thread(main, ["tenants", *argv])
        assert exited.value.code == 2
    capsys.readouterr()
    code, _, err = await _cli(capsys, "create", "x", "--id", "Not A Slug")
    assert code == 1 and "lower-case" in err
    monkeypatch.setenv("DATABASE_URL", "postgresql://relay:hunter2@127.0.0.1:1/relay")
    code, _, err = await _cli(capsys, "list")
    assert code == 1 and "database error" in err and "hunter2" not in err


def test_the_installed_command_creates_a_tenant(tmp_path: Path) -> None:
    binary = Path(sys.executable).with_name("realtime-relay")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}
    out = subprocess.run(
        [binary, "tenants", "create", "Acme", "--admin"], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert len(KEY.findall(out.stdout)) == 1
    listed = subprocess.run([binary, "tenants", "list"], env=env, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and "acme" in listed.stdout and " admin " in listed.stdout
    assert not KEY.search(listed.stdout)
