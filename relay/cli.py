"""The `realtime-relay` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from relay.config import ConfigError, Settings


def _serve(args: argparse.Namespace) -> int:
    from relay.app import create_app
    from relay.logging import configure
    from relay.server import RelayServer, uvicorn_config

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"realtime-relay: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    configure(settings.log_level)
    RelayServer(uvicorn_config(create_app(settings), settings, host, port)).run()
    return 0


def _settings(args: argparse.Namespace) -> int:
    from relay.config import settings_table

    print(settings_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime-relay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the relay server")
    serve.add_argument("--host", default=None, help="bind address (default: RELAY_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: RELAY_PORT or 8000)")
    serve.set_defaults(func=_serve)
    sub.add_parser("loadtest", help="replay audio over many concurrent sessions and report latency (see --help)")
    table = sub.add_parser("settings", help="print every setting (environment variable) as a Markdown table")
    table.set_defaults(func=_settings)
    from relay.cli_tenants import add_parser as add_tenants_parser

    add_tenants_parser(sub)
    from relay.metering.cli import add_parser as add_meter_parser

    add_meter_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["loadtest"]:
        # The harness has its own argument parser (`realtime-relay loadtest --help`).
        from loadtest.cli import main as loadtest_main

        return loadtest_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
