"""The small parsers a live stream depends on: notification payloads, Last-Event-ID, SSE frames."""

from __future__ import annotations

import pytest

from clusterflow.api.streams import StreamEvent, parse_last_event_id, sse_frame
from clusterflow.cli.follow import parse_sse
from clusterflow.records.change_listener import parse_payload


def test_notification_payloads_are_ids_only_and_malformed_ones_are_ignored() -> None:
    assert parse_payload("op_01ABC:42") == ("op_01ABC", 42)
    for bad in ("", "op_01ABC", "op_01ABC:", ":7", "op_01ABC:-1", "op_01ABC:x"):
        assert parse_payload(bad) is None


def test_last_event_id_is_a_sequence_number() -> None:
    assert parse_last_event_id(None) is None
    assert parse_last_event_id(" ") is None
    assert parse_last_event_id("17") == 17
    for bad in ("-1", "1.5", "abc", "9" * 19):
        with pytest.raises(ValueError, match="Last-Event-ID"):
            parse_last_event_id(bad)


def test_the_cli_reads_what_the_server_writes() -> None:
    events = [
        StreamEvent(1, "phase", False, '{"sequence": 1, "message": "a: b"}'),
        StreamEvent(2, "status", True, '{"sequence": 2, "message": "done"}'),
    ]
    wire = b"retry: 2000\n: operation op_1 after 0\n\n" + b"".join(sse_frame(e) for e in events)
    wire += b": keep-alive\n\n"
    parsed = list(parse_sse(iter(wire.decode().split("\n"))))
    assert parsed == [
        2000,
        (1, "phase", {"sequence": 1, "message": "a: b"}),
        (2, "status", {"sequence": 2, "message": "done"}),
    ]
