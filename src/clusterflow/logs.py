"""Log set-up shared by every process: one line per record, key=value friendly."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Temporal's worker logs each activity retry at WARN with its stack; our events say it better.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
