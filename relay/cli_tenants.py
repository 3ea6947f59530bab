"""`realtime-relay tenants …`: create tenants, list them, add and revoke API keys.

Works on the store that ``DATABASE_URL`` names (default ``sqlite:///./relay.db``), migrating it
first, so the same command prepares a fresh database and manages a live one (a running relay
sees the change on the next handshake). A new key is printed once and never again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson

from relay.config import ConfigError, Settings
from relay.store.db import Database, StoreError
from relay.store.migrate import migrated_database
from relay.store.tenants import UNCHANGED, NewKey, NotFound, Tenant, TenantError, Tenants, parse_budget


def add_parser(sub: Any) -> None:
    """Register `tenants` and its subcommands on the top-level subparsers."""
    tenants = sub.add_parser("tenants", help="manage tenants and their API keys (in DATABASE_URL)")
    tsub = tenants.add_subparsers(dest="tenants_command", required=True)

    create = tsub.add_parser("create", help="create a tenant and print its first API key (once)")
    create.add_argument("name", help="display name; the tenant id is made from it unless --id is given")
    create.add_argument("--id", dest="tenant_id", default=None, help="tenant id (slug: a-z, 0-9, '-')")
    create.add_argument("--admin", action="store_true", help="may manage tenants and read every tenant's usage")
    create.add_argument("--max-sessions", type=_cap, default=None, help="concurrent sessions (default: the setting)")
    create.add_argument("--budget", type=_budget, default=None, help="spend limit in USD, e.g. 25.00 (default: none)")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=_run(_create))

    listing = tsub.add_parser("list", help="list tenants and their keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_run(_list))

    add_key = tsub.add_parser("add-key", help="make another API key for a tenant and print it (once)")
    add_key.add_argument("tenant")
    add_key.add_argument("--json", action="store_true", help="print JSON")
    add_key.set_defaults(func=_run(_add_key))

    revoke = tsub.add_parser("revoke", help="revoke one API key (key_…) or a whole tenant")
    revoke.add_argument("target", metavar="KEY_ID_OR_TENANT")
    revoke.set_defaults(func=_run(_revoke))

    update = tsub.add_parser("update", help="change a tenant's session cap or budget")
    update.add_argument("tenant")
    update.add_argument("--max-sessions", type=_cap_or_default, default=UNCHANGED, help="N, or 'default'")
    update.add_argument("--budget", type=_budget_or_none, default=UNCHANGED, help="USD, or 'none' (unlimited)")
    update.set_defaults(func=_run(_update))


def _cap(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _cap_or_default(raw: str) -> int | None:
    return None if raw == "default" else _cap(raw)


def _budget(raw: str) -> Decimal:
    try:
        budget = parse_budget(raw)
    except TenantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert budget is not None
    return budget


def _budget_or_none(raw: str) -> Decimal | None:
    return None if raw.lower() in ("none", "unlimited") else _budget(raw)


Command = Callable[[Tenants, argparse.Namespace], Awaitable[int]]


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"realtime-relay: {exc}", file=sys.stderr)
            return 2

        async def go() -> int:
            async with migrated_database(settings.database_url, pool_size=1) as db:
                return await command(Tenants(db), args)

        try:
            return asyncio.run(go())
        except TenantError as exc:
            print(f"realtime-relay tenants: {exc}", file=sys.stderr)
            return 1
        except StoreError as exc:
            print(f"realtime-relay tenants: database error: {exc}", file=sys.stderr)
            return 1

    return run


def _print_json(value: object) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _print_new_key(db: Database, tenant: Tenant, new_key: NewKey, as_json: bool) -> None:
    if as_json:
        _print_json({"tenant": tenant.as_json(), "key_id": new_key.info.id, "api_key": new_key.key})
        return
    print(f"tenant {tenant.id} ({tenant.name}) in {db.url}")
    print(f"key id: {new_key.info.id}")
    print("API key (shown only now; store it safely):")
    print(new_key.key)


async def _create(tenants: Tenants, args: argparse.Namespace) -> int:
    tenant, new_key = await tenants.create(
        args.name, tenant_id=args.tenant_id, admin=args.admin, max_sessions=args.max_sessions, budget_usd=args.budget
    )
    _print_new_key(tenants.db, tenant, new_key, args.json)
    return 0


async def _add_key(tenants: Tenants, args: argparse.Namespace) -> int:
    new_key = await tenants.add_key(args.tenant)
    tenant = await tenants.get(args.tenant)
    assert tenant is not None
    _print_new_key(tenants.db, tenant, new_key, args.json)
    return 0


async def _list(tenants: Tenants, args: argparse.Namespace) -> int:
    listed = await tenants.all()
    keys = await tenants.keys()
    if args.json:
        _print_json(
            [{**t.as_json(), "keys": [k.as_json() for k in keys if k.tenant_id == t.id]} for t in listed],
        )
        return 0
    if not listed:
        print(f"no tenants in {tenants.db.url} (local development mode)")
        return 0
    for t in listed:
        cap = "default" if t.max_sessions is None else str(t.max_sessions)
        budget = "unlimited" if t.budget_usd is None else f"${t.budget_usd}"
        admin = " admin" if t.is_admin else ""
        print(f"{t.id}  {t.name!r}  {t.status.value}{admin}  max_sessions={cap}  budget={budget}")
        for k in keys:
            if k.tenant_id == t.id:
                state = "revoked" if k.revoked else "active"
                print(f"    {k.id}  {k.display}  {state}")
    return 0


async def _revoke(tenants: Tenants, args: argparse.Namespace) -> int:
    target: str = args.target
    if target.startswith("key_"):
        key = await tenants.revoke_key(target)
        print(f"revoked API key {key.id} ({key.display}) of tenant {key.tenant_id}")
        return 0
    try:
        tenant = await tenants.revoke_tenant(target)
    except NotFound:
        raise NotFound(f"no tenant or API key {target[:64]!r}") from None
    print(f"revoked tenant {tenant.id}: its keys and browser tokens are refused (403) from now on")
    return 0


async def _update(tenants: Tenants, args: argparse.Namespace) -> int:
    tenant = await tenants.update(args.tenant, max_sessions=args.max_sessions, budget_usd=args.budget)
    cap = "default" if tenant.max_sessions is None else str(tenant.max_sessions)
    budget = "unlimited" if tenant.budget_usd is None else f"${tenant.budget_usd}"
    print(f"tenant {tenant.id}: max_sessions={cap} budget={budget}")
    return 0
