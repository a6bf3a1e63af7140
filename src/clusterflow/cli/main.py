"""Entry point of the `clusterflow` command.

Server commands: `dev` (the whole local stack), `api`, `worker`, `migrate`, and `admin bootstrap`
(`cli/admin.py`: the first organization and owner key of an installation). Each reads the
same Settings, so one environment configures every process.

Client commands (REST over httpx, one module each): `clusters` (`cli/clusters.py`), `ops`,
`approve` and `reject` (`cli/ops.py`), `keys` (`cli/keys.py`), `runs` (`cli/runs.py`); shared plumbing and exit codes in
`cli/client.py`, live following in `cli/follow.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from clusterflow.cli import admin, cloud_accounts, clusters, keys, ops, runs
from clusterflow.cli.client import CliError, common_options
from clusterflow.logs import configure_logging
from clusterflow.settings import get_settings


def _cmd_dev(_args: argparse.Namespace) -> int:
    from clusterflow.devstack.stack import run_dev_stack

    return run_dev_stack(get_settings())


def _cmd_api(_args: argparse.Namespace) -> int:
    import uvicorn

    from clusterflow.api.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # End live streams first: uvicorn would otherwise wait out its graceful timeout on
            # them. Their clients reconnect (to this API's successor) with Last-Event-ID.
            hub = getattr(app.state, "hub", None)
            if hub is not None:
                hub.close_threadsafe()
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep our handlers (JSON or text) for uvicorn's records too
        access_log=False,
        timeout_graceful_shutdown=10,
        ws="websockets-sansio",  # the default picks websockets.legacy, which is deprecated
    )
    Server(config).run()
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


def _cmd_openapi(_args: argparse.Namespace) -> int:
    import json

    from clusterflow.api.app import create_app
    from clusterflow.settings import Settings

    print(json.dumps(create_app(Settings()).openapi(), indent=1, sort_keys=True))
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
    sub.add_parser("openapi", help="print the OpenAPI document (no services needed)").set_defaults(func=_cmd_openapi)
    admin.register(sub)
    common = common_options()
    clusters.register(sub, common)
    ops.register(sub, common)
    keys.register(sub, common)
    runs.register(sub, common)
    cloud_accounts.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(err.code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
