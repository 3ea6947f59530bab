"""`realtime-relay meter`: the metering consumer process, and its operator's tools.

=======================================  ==============================================================
``realtime-relay meter``                 consume ``RELAY_METER_STREAM`` into ``DATABASE_URL`` until
                                         SIGINT/SIGTERM (run as many as you like: one consumer group)
``meter --status``                       the stream, the group's lag and pending entries, dead letters
``meter --reconcile [--since-hours H]``  sessions whose summary disagrees with their cost records
``meter --requeue-dead``                 move dead-lettered entries back onto the stream (after a fix)
``meter --prices [--provider P]``        print the price table
``meter --set-price P M UNIT USD``       set one price (``--source``, ``--as-of``); ``USD`` ``none``
                                         deletes the row
=======================================  ==============================================================

Everything but ``--prices``/``--set-price``/``--reconcile`` needs ``REDIS_URL``. The store is migrated
first, as ``serve`` does. Output of the inspection commands is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.config import ConfigError, Settings
from relay.metering.consumer import StreamConsumer, stream_status
from relay.metering.ledger import Ledger
from relay.metering.metrics import MeterMetrics
from relay.metering.pipeline import connect_redis, consumer_config
from relay.metering.prices import PriceChange, apply_changes, list_prices
from relay.metering.pricing import Price, PriceError
from relay.metering.producer import FIELD
from relay.metering.usage import reconcile
from relay.store.db import Database, StoreError
from relay.store.migrate import migrated_database

LOG = logging.getLogger("relay.metering")


def add_parser(sub: Any) -> None:
    """Register `meter` on the top-level subparsers."""
    meter = sub.add_parser("meter", help="run the metering consumer (REDIS_URL -> DATABASE_URL), or inspect it")
    what = meter.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="print stream length, lag, pending and dead letters")
    what.add_argument("--reconcile", action="store_true", help="list sessions whose summary disagrees with records")
    what.add_argument("--requeue-dead", action="store_true", help="move dead-lettered entries back to the stream")
    what.add_argument("--prices", action="store_true", help="print the price table")
    what.add_argument(
        "--set-price", nargs=4, metavar=("PROVIDER", "MODEL", "UNIT", "USD"), help="set (or, USD=none, delete) a price"
    )
    meter.add_argument("--provider", default=None, help="with --prices: only this provider")
    meter.add_argument("--source", default="", help="with --set-price: where the price was read")
    meter.add_argument("--as-of", default="", help="with --set-price: when it was read (YYYY-MM-DD)")
    meter.add_argument("--since-hours", type=float, default=24.0, help="with --reconcile: how far back (default 24)")
    meter.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    meter.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from relay.logging import configure

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"realtime-relay: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    needs_redis = not (args.prices or args.set_price or args.reconcile)
    if needs_redis and not settings.redis_url:
        print("realtime-relay meter: REDIS_URL is not set (without it the relay meters in-process)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(settings, args))
    except (PriceError, ValueError) as exc:
        print(f"realtime-relay meter: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"realtime-relay meter: database error: {exc}", file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"realtime-relay meter: Redis error: {exc}", file=sys.stderr)
        return 1


async def _main(settings: Settings, args: argparse.Namespace) -> int:
    if args.status:
        return await _status(settings)
    if args.requeue_dead:
        return await _requeue_dead(settings)
    async with migrated_database(settings.database_url, pool_size=settings.database_pool_size) as db:
        if args.prices:
            _print([p.as_json() for p in await list_prices(db, args.provider)])
            return 0
        if args.set_price:
            return await _set_price(db, args)
        if args.reconcile:
            since_ms = int((time.time() - args.since_hours * 3600) * 1000)
            found = await reconcile(db, since_ms)
            _print([dataclasses.asdict(m) for m in found])
            return 1 if found else 0
        return await _consume(settings, db, args.metrics_port)


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


async def _set_price(db: Database, args: argparse.Namespace) -> int:
    provider, model, unit, raw = args.set_price
    usd: Decimal | None = None
    if raw.lower() != "none":
        try:
            usd = Decimal(raw)
        except InvalidOperation:
            raise ValueError(f"USD must be a decimal number such as 0.40, got {raw[:40]!r}") from None
        Price(provider, model, unit, usd, args.source, args.as_of)  # validates
    await apply_changes(db, [PriceChange(provider, model, unit, usd, args.source, args.as_of)])
    _print([p.as_json() for p in await list_prices(db, provider)])
    return 0


async def _status(settings: Settings) -> int:
    redis = connect_redis(settings.redis_url.value)
    try:
        status = await stream_status(redis, consumer_config(settings))
    finally:
        await redis.aclose()
    _print(status.as_json())
    return 0


async def _requeue_dead(settings: Settings) -> int:
    """XADD each dead letter's event back to the stream and delete it from the dead-letter stream,
    both in one MULTI, so an entry is always in exactly one of the two."""
    config = consumer_config(settings)
    redis: Redis = connect_redis(settings.redis_url.value)
    moved = 0
    try:
        entries: Any = await redis.xrange(config.dead_letter_stream)
        for entry_id, fields in entries:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.xadd(config.stream, {FIELD: fields.get(FIELD, b"")})
                pipe.xdel(config.dead_letter_stream, entry_id)
                await pipe.execute()
            moved += 1
    finally:
        await redis.aclose()
    _print({"requeued": moved})
    return 0


async def _consume(settings: Settings, db: Database, metrics_port: int | None) -> int:
    metrics = MeterMetrics.standalone()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.host, registry=metrics.registry)
    config = consumer_config(settings)
    redis = connect_redis(settings.redis_url.value, block_ms=config.block_ms)
    consumer = StreamConsumer(redis, Ledger(db), config, metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, consumer.stop)
    try:
        await consumer.run()
    finally:
        await consumer.redis.aclose()
    LOG.info("metering consumer %s stopped", consumer.name)
    return 0
