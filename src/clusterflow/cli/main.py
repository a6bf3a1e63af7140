"""Entry point of the `clusterflow` command.

Server commands: `dev` (the whole local stack), `api`, `worker`, `migrate`. Each reads the
same Settings, so one environment configures every process.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from clusterflow.logs import configure_logging
from clusterflow.settings import get_settings


def _cmd_dev(_args: argparse.Namespace) -> int:
    from clusterflow.devstack.stack import run_dev_stack

    return run_dev_stack(get_settings())


def _cmd_api(_args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "clusterflow.api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep our handlers (JSON or text) for uvicorn's records too
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _cmd_worker(_args: argparse.Namespace) -> int:
    from clusterflow.worker.main import main as worker_main

    worker_main()
    return 0


def _cmd_migrate(_args: argparse.Namespace) -> int:
    from clusterflow.records.migrate import migrate

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    applied = asyncio.run(migrate(settings.require_database_url()))
    print(f"applied {len(applied)} migrations: {', '.join(applied) or 'none pending'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clusterflow", description="clusterflow control plane")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="run the whole stack locally (embedded Temporal and PostgreSQL)").set_defaults(
        func=_cmd_dev
    )
    sub.add_parser("api", help="run the REST API").set_defaults(func=_cmd_api)
    sub.add_parser("worker", help="run a worker").set_defaults(func=_cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=_cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
