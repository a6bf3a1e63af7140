"""The API's notification-dropped caches: what they may serve, and what they must not store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clusterflow.api.read_caches import NotifiedCache, ReadCaches
from clusterflow.records.organizations import Principal


class Listener:
    listening = True


def cache(max_entries: int = 10, max_age: float | None = None) -> tuple[NotifiedCache[str, str], Listener]:
    listener = Listener()
    return NotifiedCache(max_entries, max_age, lambda: listener.listening), listener


def read(c: NotifiedCache[str, str], key: str, value: str) -> None:
    with c.reading(key) as reading:
        reading.store(value)


def test_a_stored_read_is_served_until_its_key_is_dropped() -> None:
    c, _ = cache()
    assert c.get("op") is None
    read(c, "op", "v1")
    assert c.get("op") == "v1"
    c.drop("op")
    assert c.get("op") is None


def test_a_read_overtaken_by_a_drop_is_not_stored() -> None:
    # The read may have seen the row before the change that the drop announces.
    c, _ = cache()
    with c.reading("op") as reading:
        c.drop("op")
        reading.store("stale")
    assert c.get("op") is None
    read(c, "op", "fresh")  # the next read is stored again
    assert c.get("op") == "fresh"


def test_a_drop_during_one_of_two_overlapping_reads_discards_both() -> None:
    c, _ = cache()
    first = c.reading("op")
    second = c.reading("op")
    c.drop("op")
    with first:
        first.store("a")
    with second:
        second.store("b")
    assert c.get("op") is None


def test_a_clear_discards_reads_in_flight() -> None:
    c, _ = cache()
    with c.reading("op") as reading:
        c.clear()
        reading.store("stale")
    assert c.get("op") is None


def test_a_failed_read_stores_nothing() -> None:
    c, _ = cache()

    def failing_read() -> None:
        with c.reading("op") as reading:
            reading.store("half")
            raise LookupError

    with pytest.raises(LookupError):
        failing_read()
    assert c.get("op") is None


def test_nothing_is_served_or_stored_while_the_listener_is_down() -> None:
    c, listener = cache()
    read(c, "op", "v1")
    listener.listening = False
    assert c.get("op") is None
    read(c, "other", "v2")
    listener.listening = True
    assert c.get("other") is None


def test_entries_are_bounded_least_recently_used_first() -> None:
    c, _ = cache(max_entries=2)
    read(c, "a", "1")
    read(c, "b", "2")
    assert c.get("a") == "1"  # a is now more recent than b
    read(c, "c", "3")
    assert (c.get("a"), c.get("b"), c.get("c")) == ("1", None, "3")


def test_entries_age_out(monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = cache(max_age=30)
    now = [1000.0]
    monkeypatch.setattr("clusterflow.api.read_caches.time.monotonic", lambda: now[0])
    read(c, "key", "principal")
    now[0] += 29
    assert c.get("key") == "principal"
    now[0] += 2
    assert c.get("key") is None


def test_zero_entries_turns_the_cache_off() -> None:
    c, _ = cache(max_entries=0)
    read(c, "op", "v1")
    assert c.get("op") is None and len(c) == 0


def test_any_key_change_and_any_reconnect_empty_the_key_cache() -> None:
    caches = ReadCaches(60, 100, lambda: True)
    principal = Principal("key_1", "org_1", "viewer", "ci")
    for event in (lambda: caches.api_key_changed("key_other"), caches.resync):
        with caches.keys.reading(b"digest") as reading:
            reading.store(principal)
        assert caches.keys.get(b"digest") == principal
        event()
        assert caches.keys.get(b"digest") is None


def test_an_expired_principal_is_not_valid() -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert not Principal("key_1", "org_1", "viewer", "ci", expires_at=past).valid_now()
    assert Principal("key_1", "org_1", "viewer", "ci", expires_at=past + timedelta(hours=1)).valid_now()
    assert Principal("key_1", "org_1", "viewer", "ci").valid_now()
