"""Log set-up shared by every process: one line per record, as text for people or JSON for machines.

Every record carries what an operator searches by, without call sites passing it along:
- `request_id`, `organization_id`, `operation_id`: context variables bound by the API's
  middleware, its auth dependency and `enqueue` (`bind`), so every line a request causes has them;
- `workflow_id`, `workflow_type`, `activity_type`, `attempt`: read by the filter from Temporal's
  activity or workflow context when the record is emitted inside one (an operation's workflow ID
  is its operation ID, so `operation_id` is filled there too);
- `trace_id`, `span_id`: from the current OpenTelemetry span when tracing is on.
Filling these in a filter rather than with LoggerAdapters means third-party loggers (uvicorn,
temporalio) get them too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from temporalio import activity, workflow

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
organization_var: ContextVar[str | None] = ContextVar("organization_id", default=None)
operation_var: ContextVar[str | None] = ContextVar("operation_id", default=None)

CONTEXT_FIELDS = (
    "request_id",
    "organization_id",
    "operation_id",
    "workflow_id",
    "workflow_type",
    "activity_type",
    "attempt",
    "trace_id",
    "span_id",
)


def bind(*, request_id: str | None = None, organization_id: str | None = None, operation_id: str | None = None) -> None:
    """Attach identifiers to every log line of the current task from here on."""
    if request_id is not None:
        request_id_var.set(request_id)
    if organization_id is not None:
        organization_var.set(organization_id)
    if operation_id is not None:
        operation_var.set(operation_id)


def _temporal_context() -> dict[str, Any]:
    if activity.in_activity():
        a = activity.info()
        return {
            "workflow_id": a.workflow_id,
            "workflow_type": a.workflow_type,
            "activity_type": a.activity_type,
            "attempt": a.attempt,
        }
    if workflow.in_workflow():
        w = workflow.info()
        return {"workflow_id": w.workflow_id, "workflow_type": w.workflow_type, "attempt": w.attempt}
    return {}


def _trace_context() -> dict[str, Any]:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry-api is a dependency
        return {}
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        values: dict[str, Any] = {
            "request_id": request_id_var.get(),
            "organization_id": organization_var.get(),
            "operation_id": operation_var.get(),
        }
        with contextlib.suppress(Exception):  # never lose a log line to a context lookup
            values |= _temporal_context()
        if values.get("operation_id") is None and str(values.get("workflow_id", "")).startswith("op_"):
            values["operation_id"] = values["workflow_id"]
        values |= _trace_context()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, values.get(name))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS[:6] if getattr(record, n, None))
        return f"{text} [{context}]" if context else text


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; route its records through ours so they are JSON too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Temporal's worker logs each activity retry at WARN with its stack; our events say it better.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
