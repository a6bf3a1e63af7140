"""Chaos: the real processes, broken on purpose; each scenario ends with a VERDICT line.

Short versions run in `make test`; `make chaos` runs the same scripts at the sizes of the issue
(`CHAOS_FULL=1`). Each scenario owns its PostgreSQL and Temporal (tests/chaos/stack.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from clusterflow.records import local_cloud
from tests.chaos.stack import FULL, ChaosStack, chaos_stack, size, verdict
from tests.helpers import deploy_document

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChaosStack]:
    """One stack for the scenarios that break only our processes; each kills and replaces them."""
    async with chaos_stack(tmp_path_factory.mktemp("chaos-shared")) as stack:
        stack.worker = stack.start_worker("worker-0")
        stack.api = await stack.start_api("api-0")
        yield stack


async def enqueue_deploys(stack: ChaosStack, prefix: str, count: int, **local: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.base, headers=stack.headers, timeout=60) as http:

        async def one(i: int) -> dict[str, Any]:
            response = await http.post("/v1/clusters", json=deploy_document(f"{prefix}-{i}", **local))
            assert response.status_code == 202, response.text
            data: dict[str, Any] = response.json()["data"]
            return data

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def wait_running(stack: ChaosStack, operation_ids: list[str], timeout: float = 60) -> None:
    assert stack.pool is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = await stack.pool.fetchval(
            "SELECT count(*) FROM operations WHERE id = ANY($1::text[]) AND status = 'RUNNING'", operation_ids
        )
        if running == len(operation_ids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the operations never all ran")


async def check_side_effects_and_events(stack: ChaosStack, accepted: list[dict[str, Any]]) -> list[str]:
    """Problems found: a resource created twice, an event gap or duplicate."""
    assert stack.pool is not None
    problems = []
    for item in accepted:
        calls = await local_cloud.api_calls(stack.pool, item["clusterId"])
        creates = Counter((c.kind, c.name) for c in calls if c.action == "create")
        if not creates or set(creates.values()) != {1}:
            problems.append(f"{item['clusterId']}: creates {dict(creates)}")
        rows = await stack.pool.fetch(
            "SELECT sequence, event_key FROM operation_events WHERE operation_id = $1 ORDER BY sequence",
            item["operationId"],
        )
        sequences = [r["sequence"] for r in rows]
        if sequences != list(range(1, len(sequences) + 1)):
            problems.append(f"{item['operationId']}: event sequences {sequences}")
        keys = Counter(r["event_key"] for r in rows)
        if any(n > 1 for n in keys.values()):
            problems.append(f"{item['operationId']}: duplicated event keys")
    return problems


async def test_worker_killed_with_operations_in_flight(shared: ChaosStack) -> None:
    count = size(10, 50)
    stack = shared
    accepted = await enqueue_deploys(stack, "wk", count, phaseSeconds=0.5)
    ids = [a["operationId"] for a in accepted]
    await wait_running(stack, ids)
    await asyncio.sleep(1.0)
    stack.kill(stack.worker)
    stack.worker = stack.start_worker("worker-after-kill")
    statuses = await stack.wait_terminal(ids, timeout=size(90, 240))
    problems = await check_side_effects_and_events(stack, accepted)
    outcome = Counter(statuses.values())
    ok = outcome == Counter({"SUCCEEDED": count}) and not problems
    verdict("worker kill -9", ok, f"{count} deploys in flight: {dict(outcome)}; problems: {problems[:3]}")
    assert ok


async def validate_runs(stack: ChaosStack, operation_ids: list[str]) -> list[int]:
    """Per operation, how many runs of VALIDATE have started (each writes one `phase` event)."""
    assert stack.pool is not None
    rows = await stack.pool.fetch(
        """SELECT o.id, count(e.sequence) AS runs FROM operations o
             LEFT JOIN operation_events e ON e.operation_id = o.id AND e.phase = 'VALIDATE' AND e.kind = 'phase'
                  AND e.event_key NOT LIKE '%/completed'
            WHERE o.id = ANY($1::text[]) GROUP BY o.id""",
        operation_ids,
    )
    return [int(r["runs"]) for r in rows]


@pytest.mark.skipif(
    not FULL,
    reason="make test runs this case as tests/integration/test_phase_runs.py::"
    "test_five_worker_kills_in_one_phase_do_not_spend_its_attempts; make chaos runs it at full size",
)
async def test_five_worker_kills_in_one_phase(shared: ChaosStack) -> None:
    """Five SIGKILLs of the worker while every deploy is in VALIDATE, with the default five
    attempts per phase: the lost runs are re-checked and spend none of them."""
    count, kills = size(2, 20), 5
    stack = shared
    accepted = await enqueue_deploys(stack, "fk", count, phaseSeconds=3)
    ids = [a["operationId"] for a in accepted]
    started = time.monotonic()
    for kill in range(kills):
        deadline = time.monotonic() + 90
        while min(await validate_runs(stack, ids), default=0) < kill + 1:
            assert time.monotonic() < deadline, f"the deploys never all ran VALIDATE {kill + 1} times"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stack.kill(stack.worker)
        stack.worker = stack.start_worker(f"worker-phase-kill-{kill + 1}")
    statuses = await stack.wait_terminal(ids, timeout=size(120, 300))
    elapsed = time.monotonic() - started
    problems = await check_side_effects_and_events(stack, accepted)
    assert stack.pool is not None
    rechecks: Counter[int] = Counter()
    for op in ids:
        rechecks[
            await stack.pool.fetchval(
                "SELECT count(*) FROM operation_events WHERE operation_id = $1"
                " AND message LIKE 're-checking VALIDATE%'",
                op,
            )
        ] += 1
    falling = 0
    for op in ids:
        progress = [
            r["progress_percentage"]
            for r in await stack.pool.fetch(
                "SELECT progress_percentage FROM operation_events WHERE operation_id = $1"
                " AND progress_percentage IS NOT NULL ORDER BY sequence",
                op,
            )
        ]
        falling += progress != sorted(progress)
    outcome = Counter(statuses.values())
    ok = outcome == Counter({"SUCCEEDED": count}) and rechecks == Counter({kills: count}) and not problems
    ok = ok and falling == 0
    verdict(
        "five worker kills in one phase",
        ok,
        f"{count} deploys, {kills} kills -9 in VALIDATE: {dict(outcome)} in {elapsed:.0f} s; re-checks per deploy "
        f"{dict(rechecks)}; progress falling in {falling}; problems: {problems[:3]}",
    )
    assert ok


async def test_temporal_killed_and_restarted_on_its_database(shared: ChaosStack) -> None:
    count = size(5, 50)
    down_requests = size(5, 50)
    stack = shared
    accepted = await enqueue_deploys(stack, "tk", count, phaseSeconds=0.5)
    ids = [a["operationId"] for a in accepted]
    await wait_running(stack, ids)
    stack.temporal.kill()
    async with httpx.AsyncClient(base_url=stack.base, headers=stack.headers, timeout=60) as http:

        async def enqueue_while_down(i: int) -> tuple[int, str | None, float]:
            started = time.monotonic()
            response = await http.post("/v1/clusters", json=deploy_document(f"down-{i}"))
            return response.status_code, response.headers.get("Retry-After"), time.monotonic() - started

        answers = await asyncio.gather(*(enqueue_while_down(i) for i in range(down_requests)))
    stack.temporal.start()
    statuses = await stack.wait_terminal(ids, timeout=size(90, 240))
    problems = await check_side_effects_and_events(stack, accepted)
    assert stack.pool is not None
    left = await stack.pool.fetchval(
        "SELECT count(*) FROM operations WHERE cluster_name LIKE 'down-%'"  # withdrawn: not even FAILED
    )
    clusters_left = await stack.pool.fetchval("SELECT count(*) FROM clusters WHERE name LIKE 'down-%'")
    # After the restart, enqueues work again.
    after = await enqueue_deploys(stack, "tk-after", 1)
    after_status = await stack.wait_terminal([after[0]["operationId"]], timeout=60)
    outcome = Counter(statuses.values())
    codes = Counter((status, bool(retry)) for status, retry, _ in answers)
    ok = (
        outcome == Counter({"SUCCEEDED": count})
        and codes == Counter({(503, True): down_requests})
        and left == 0
        and clusters_left == 0
        and not problems
        and list(after_status.values()) == ["SUCCEEDED"]
    )
    slowest = max(t for *_, t in answers)
    verdict(
        "temporal kill -9",
        ok,
        f"{count} in flight: {dict(outcome)}; {down_requests} enqueues while down: {dict(codes)} "
        f"(slowest answer {slowest:.1f} s), left enqueued {left}, clusters left {clusters_left}; "
        f"after restart {dict(Counter(after_status.values()))}; problems {problems[:3]}",
    )
    assert ok


async def test_postgres_restarted_mid_run(shared: ChaosStack) -> None:
    count = size(5, 50)
    stack = shared
    accepted = await enqueue_deploys(stack, "pg", count, phaseSeconds=0.5)
    ids = [a["operationId"] for a in accepted]
    await wait_running(stack, ids)
    stack.postgres.stop()
    await asyncio.sleep(1.0)
    stack.postgres.start()
    statuses = await stack.wait_terminal(ids, timeout=size(90, 240))
    problems = await check_side_effects_and_events(stack, accepted)
    # Both pools recovered: the API enqueues and the worker runs new deploys.
    after = await enqueue_deploys(stack, "pg-after", 2)
    after_status = await stack.wait_terminal([a["operationId"] for a in after], timeout=60)
    outcome = Counter(statuses.values())
    ok = outcome == Counter({"SUCCEEDED": count}) and not problems and set(after_status.values()) == {"SUCCEEDED"}
    verdict(
        "postgres restart",
        ok,
        f"{count} in flight: {dict(outcome)}; after restart {dict(Counter(after_status.values()))}; "
        f"problems {problems[:3]}",
    )
    assert ok


async def follow(port: int, key: str, operation_id: str, seen: list[int], reconnects: list[int]) -> None:
    """An SSE client that resumes with Last-Event-ID after any break, until the stream ends."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        resume = f"Last-Event-ID: {seen[-1]}\r\n" if seen else ""
        writer.write(
            (
                f"GET /v1/operations/{operation_id}/events?follow=true&untilTerminal=true HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n{resume}\r\n"
            ).encode()
        )
        try:
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                raise ConnectionError(status)
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            buffer = b""
            while True:
                line = await reader.readline()
                if not line:
                    raise ConnectionError("cut")
                chunk_size = int(line.strip() or b"0", 16)
                if chunk_size == 0:
                    writer.close()
                    return  # the server ended the stream after the terminal event
                buffer += (await reader.readexactly(chunk_size + 2))[:-2]
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    for field in frame.split(b"\n"):
                        if field.startswith(b"id: "):
                            seen.append(int(field[4:]))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            reconnects.append(1)
            writer.close()
            await asyncio.sleep(0.1)
    raise TimeoutError(operation_id)


async def test_api_killed_under_two_hundred_streams(shared: ChaosStack) -> None:
    streams, operations = size(40, 200), size(4, 20)
    stack = shared
    api = stack.api
    accepted = await enqueue_deploys(stack, "st", operations, phaseSeconds=0.6)
    ids = [a["operationId"] for a in accepted]
    seen: list[list[int]] = [[] for _ in range(streams)]
    reconnects: list[int] = []
    clients = [
        asyncio.create_task(follow(stack.api_port, stack.key, ids[i % operations], seen[i], reconnects))
        for i in range(streams)
    ]
    await asyncio.sleep(1.5)
    stack.kill(api)
    await asyncio.sleep(0.5)
    stack.api = await stack.start_api("api-after-kill")
    await asyncio.wait_for(asyncio.gather(*clients), timeout=size(120, 300))
    assert stack.pool is not None
    expected = {
        op: [r["sequence"] for r in await stack.pool.fetch(
            "SELECT sequence FROM operation_events WHERE operation_id = $1 ORDER BY sequence", op
        )]
        for op in ids
    }  # fmt: skip
    wrong = [i for i in range(streams) if seen[i] != expected[ids[i % operations]]]
    ok = not wrong and len(reconnects) >= streams
    verdict(
        "API kill -9 under streams",
        ok,
        f"{streams} streams over {operations} operations, {len(reconnects)} reconnects, "
        f"{sum(len(s) for s in seen)} events received; streams with a gap or duplicate: {len(wrong)}",
    )
    assert ok


def bad_requests(count: int) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(method, path, body, headers): malformed JSON, huge bodies, wrong types, unknown fields, NUL."""
    good = deploy_document("bad")
    json_type = {"Content-Type": "application/json"}
    kinds: list[tuple[str, str, bytes, dict[str, str]]] = []
    for i in range(count):
        kind = i % 10
        doc = json.loads(json.dumps(good))
        if kind == 0:
            body = json.dumps(good).encode()[: 10 + i % 200]  # truncated JSON
        elif kind == 1:
            body = b"{" * (1 + i % 50) + b"'not json'"
        elif kind == 2:
            body = b'{"apiVersion": "clusterflow.dev/v1", "spec": ' + b"[" * 2000 + b"]" * 2000 + b"}"
        elif kind == 3:
            body = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'  # beyond CLUSTERFLOW_MAX_BODY_BYTES
        elif kind == 4:
            doc["spec"]["clusterName"] = i  # wrong type
            body = json.dumps(doc).encode()
        elif kind == 5:
            doc["spec"]["clusterSpec"]["controlPlane"]["nodeGroup"]["minNode"] = "one"
            body = json.dumps(doc).encode()
        elif kind == 6:
            doc["spec"][f"unknown{i}"] = True  # unknown field
            body = json.dumps(doc).encode()
        elif kind == 7:
            doc["spec"]["clusterName"] = f"nul\x00{i}"  # NUL inside a string
            body = json.dumps(doc).encode()
        elif kind == 8:
            body = b"\x00" * (1 + i % 100)  # NUL bytes for a body
        else:
            doc["spec"] = [doc["spec"]]  # an array where an object belongs
            body = json.dumps(doc).encode()
        # Every kind of bad body reaches every kind of route that reads one.
        route = (i // 10) % 5
        if route == 3:
            kinds.append(("PATCH", "/v1/clusters/cl-doesnotexist", body, json_type))
        elif route == 4:
            kinds.append(("POST", "/v1/operations/op-doesnotexist/approval", body, json_type))
        else:
            kinds.append(("POST", "/v1/clusters", body, json_type))
    return kinds


async def test_a_thousand_bad_requests_are_all_refused_and_enqueue_nothing(shared: ChaosStack) -> None:
    count = size(200, 1000)
    stack = shared
    org, key = await stack.new_key()
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.base, headers=headers, timeout=60) as http:
        semaphore = asyncio.Semaphore(20)

        async def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
            async with semaphore:
                try:
                    response = await http.request(method, path, content=body, headers=headers)
                    statuses[response.status_code] += 1
                except httpx.HTTPError as err:
                    statuses[-1] += 1
                    print("transport error", type(err).__name__, err)

        await asyncio.gather(*(send(*r) for r in bad_requests(count)))
        alive = (await http.get("/healthz")).status_code
    assert stack.pool is not None
    operations = await stack.pool.fetchval("SELECT count(*) FROM operations WHERE organization_id = $1", org)
    clusters = await stack.pool.fetchval("SELECT count(*) FROM clusters WHERE organization_id = $1", org)
    ok = all(400 <= s < 500 for s in statuses) and operations == 0 and clusters == 0 and alive == 200
    verdict(
        "bad requests",
        ok,
        f"{count} requests: {dict(sorted(statuses.items()))}; operations {operations}, clusters {clusters}; "
        f"API healthy after: {alive == 200}",
    )
    assert ok


def api_tracebacks(stack: ChaosStack, *, requests_only: bool = True) -> int:
    """Tracebacks the API logged for a request (the log line before names its request_id), or
    any, its background loops' included."""
    found = 0
    for log in stack.root.glob("api*.log"):
        lines = log.read_text(errors="replace").splitlines()
        pairs = itertools.pairwise(lines)
        found += sum(
            1
            for before, line in pairs
            if line.startswith("Traceback") and (not requests_only or "request_id=" in before)
        )
    return found


def api_outage_warnings(stack: ChaosStack) -> tuple[int, int]:
    """How many times the API's log said the database was unavailable, and available again."""
    text = "".join(log.read_text(errors="replace") for log in stack.root.glob("api*.log"))
    return text.count("database unavailable ("), text.count("database available again")


async def test_postgres_down_under_load_answers_503_never_500(shared: ChaosStack) -> None:
    """Clients keep enqueueing and reading while PostgreSQL is stopped and started again: every
    answer is a success or a 503 with Retry-After, never a 500, and a refused enqueue left nothing."""
    clients, outage = size(4, 20), size(3, 10)
    stack = shared
    org, key = await stack.new_key()
    codes: dict[str, Counter[tuple[int, str]]] = {"before": Counter(), "down": Counter(), "after": Counter()}
    window = ["before"]
    missing_retry_after = 0
    unanswered: Counter[str] = Counter()
    accepted: list[str] = []
    refused: list[str] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:

        async def client(i: int) -> None:
            nonlocal missing_retry_after
            n = 0
            while not stop.is_set():
                n += 1
                name = f"pgl-{i}-{n}"
                kind = ("enqueue", "list clusters", "list operations")[n % 3]
                try:
                    if kind == "enqueue":
                        response = await http.post("/v1/clusters", json=deploy_document(name, phaseSeconds=0.2))
                    elif kind == "list clusters":
                        response = await http.get("/v1/clusters")
                    else:
                        response = await http.get("/v1/operations")
                except httpx.HTTPError as err:
                    codes[window[0]][(-1, kind)] += 1  # no answer at all
                    unanswered[f"{kind}: {type(err).__name__}"] += 1
                    continue
                codes[window[0]][(response.status_code, kind)] += 1  # by when the answer came
                if response.status_code == 503 and not response.headers.get("Retry-After"):
                    missing_retry_after += 1
                if kind == "enqueue":
                    (accepted if response.status_code == 202 else refused).append(name)
                await asyncio.sleep(0.05)

        load = [asyncio.create_task(client(i)) for i in range(clients)]
        await asyncio.sleep(2)
        tracebacks_before = api_tracebacks(stack)
        all_tracebacks_before = api_tracebacks(stack, requests_only=False)
        warnings_before = api_outage_warnings(stack)
        window[0] = "down"
        await asyncio.to_thread(stack.postgres.stop)
        await asyncio.sleep(outage)
        await asyncio.to_thread(stack.postgres.start)
        window[0] = "after"
        # Until the API answers again (its pool reconnects), then a little more load.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (await http.get("/v1/clusters")).status_code != 200:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*load)
    tracebacks = api_tracebacks(stack) - tracebacks_before
    background_tracebacks = api_tracebacks(stack, requests_only=False) - all_tracebacks_before - tracebacks
    down_said, up_said = (now - then for now, then in zip(api_outage_warnings(stack), warnings_before, strict=True))
    assert stack.pool is not None
    for _ in range(50):  # the test's own pool reconnects too
        try:
            await stack.pool.fetchval("SELECT 1")
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(0.2)
    ids = [
        r["id"]
        for r in await stack.pool.fetch(
            "SELECT id FROM operations WHERE organization_id = $1 AND cluster_name = ANY($2::text[])", org, accepted
        )
    ]
    statuses = await stack.wait_terminal(ids, timeout=size(90, 240))
    phantoms = await stack.pool.fetchval(
        "SELECT count(*) FROM operations WHERE organization_id = $1 AND cluster_name = ANY($2::text[])", org, refused
    )
    everything = sum(codes.values(), Counter())
    server_errors = sum(n for (status, _), n in everything.items() if status >= 500 and status != 503)
    unavailable_while_down = sum(n for (status, _), n in codes["down"].items() if status == 503)
    outcome = Counter(statuses.values())
    ok = (
        server_errors == 0
        and unavailable_while_down > 0
        and missing_retry_after == 0
        and phantoms == 0
        and len(ids) == len(accepted)
        and set(outcome) <= {"SUCCEEDED"}
        and tracebacks == 0
        and background_tracebacks == 0
        and not unanswered
        and (down_said, up_said) == (1, 1)
    )

    def summary(counter: Counter[tuple[int, str]]) -> dict[int, int]:
        by_status: Counter[int] = Counter()
        for (status, _), n in counter.items():
            by_status[status] += n
        return dict(sorted(by_status.items()))

    verdict(
        "postgres down under load",
        ok,
        f"{clients} clients, PostgreSQL stopped {outage} s: before {summary(codes['before'])}, while down "
        f"{summary(codes['down'])}, after {summary(codes['after'])}; 500s {server_errors}; 503 without Retry-After "
        f"{missing_retry_after}; {len(accepted)} enqueues accepted: {dict(outcome)}; {len(refused)} refused, "
        f"left behind {phantoms}; request tracebacks in the API's log {tracebacks}, others {background_tracebacks}; "
        f"the log said unavailable {down_said}, available again {up_said}; unanswered {dict(unanswered)}",
    )
    assert ok


async def test_temporal_frozen_answers_each_kind_of_call_503_within_the_bound(shared: ChaosStack) -> None:
    """SIGSTOP of Temporal: enqueue, cancel and approve each answer 503 ORCHESTRATOR_UNAVAILABLE
    with Retry-After within the call bound; nothing they asked for happens; after SIGCONT all work."""
    per_kind = size(5, 30)
    stack = shared
    bound = float(stack.env()["CLUSTERFLOW_WORKFLOW_START_TIMEOUT_SECONDS"])
    org, key = await stack.new_key()
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.base, headers=headers, timeout=120) as http:
        policy = await http.put(f"/v1/organizations/{org}/approval-policy", json={"clusterDeploy": True})
        assert policy.status_code == 200, policy.text
        waiting = []
        for i in range(2 * per_kind):
            response = await http.post("/v1/clusters", json=deploy_document(f"tf-{i}"))
            assert response.status_code == 202, response.text
            waiting.append(response.json()["data"])
        assert stack.pool is not None
        deadline = time.monotonic() + 60
        while await stack.pool.fetchval(
            "SELECT count(*) FROM operations WHERE organization_id = $1 AND status = 'AWAITING_APPROVAL'", org
        ) < len(waiting):
            assert time.monotonic() < deadline, "the deploys never all waited for approval"
            await asyncio.sleep(0.1)
        to_approve, to_cancel = waiting[:per_kind], waiting[per_kind:]

        async def call(kind: str, i: int) -> tuple[str, int, str | None, str | None, float]:
            started = time.monotonic()
            if kind == "enqueue":
                response = await http.post("/v1/clusters", json=deploy_document(f"tf-new-{i}"))
            elif kind == "approve":
                item = to_approve[i]
                response = await http.post(
                    f"/v1/operations/{item['operationId']}/approval",
                    json={"action": "APPROVE", "token": item["approvalToken"]},
                )
            else:
                response = await http.post(f"/v1/operations/{to_cancel[i]['operationId']}/cancel")
            code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
            return kind, response.status_code, code, response.headers.get("Retry-After"), time.monotonic() - started

        stack.freeze_temporal()
        try:
            answers = await asyncio.gather(
                *(call(kind, i) for kind in ("enqueue", "cancel", "approve") for i in range(per_kind))
            )
        finally:
            stack.thaw_temporal()
        # Nothing the refused calls asked for happened: still waiting, nothing new enqueued.
        still_waiting = await stack.pool.fetchval(
            "SELECT count(*) FROM operations WHERE organization_id = $1 AND status = 'AWAITING_APPROVAL'", org
        )
        left = await stack.pool.fetch(
            "SELECT status FROM operations WHERE organization_id = $1 AND cluster_name LIKE 'tf-new-%'", org
        )
        new_ones = len(left)
        # After the thaw every kind of call works again.
        approved = await http.post(
            f"/v1/operations/{to_approve[0]['operationId']}/approval",
            json={"action": "APPROVE", "token": to_approve[0]["approvalToken"]},
        )
        cancelled = await http.post(f"/v1/operations/{to_cancel[0]['operationId']}/cancel")
        enqueued = await http.post("/v1/clusters", json=deploy_document("tf-after"))
    counts: dict[str, Counter[tuple[int, str | None, bool]]] = {}
    slowest: dict[str, float] = {}
    for kind, status, code, retry_after, elapsed in answers:
        counts.setdefault(kind, Counter())[(status, code, bool(retry_after))] += 1
        slowest[kind] = max(slowest.get(kind, 0.0), elapsed)
    expected = Counter({(503, "ORCHESTRATOR_UNAVAILABLE", True): per_kind})
    after = (approved.status_code, cancelled.status_code, enqueued.status_code)
    ok = (
        all(counts[kind] == expected for kind in ("enqueue", "cancel", "approve"))
        and all(t < bound + 5 for t in slowest.values())
        and still_waiting == len(waiting)
        and new_ones == 0
        and after[0] == 200
        and after[1] in (200, 202)
        and after[2] == 202
    )
    verdict(
        "temporal frozen",
        ok,
        "; ".join(
            f"{per_kind} {kind}: {dict(counts.get(kind, {}))} (slowest {slowest.get(kind, 0):.1f} s)"
            for kind in ("enqueue", "cancel", "approve")
        )
        + f"; bound {bound:.0f} s; still waiting {still_waiting}/{len(waiting)}, enqueued while frozen {new_ones} "
        f"{dict(Counter(r['status'] for r in left))}; after the thaw approve/cancel/enqueue {after}",
    )
    assert ok


def oversized_document() -> bytes:
    """About 840 KB of emoji labels: under the body limit, over Temporal's payload limit once the
    data converter escapes them (2.4 MB)."""
    doc = deploy_document("emoji")
    labels = {f"k{i}": "\U0001f680" * 63 for i in range(64)}
    doc["spec"]["clusterSpec"]["dataPlane"]["nodeGroups"] = [
        {"name": f"g{i}", "machineTypes": ["medium"], "minNode": 1, "maxNode": 3, "labels": labels} for i in range(50)
    ]
    return json.dumps(doc, ensure_ascii=False).encode()


async def test_an_oversized_workflow_input_is_a_413_every_time(shared: ChaosStack) -> None:
    count = size(5, 50)
    stack = shared
    org, key = await stack.new_key()
    body = oversized_document()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    answers: Counter[tuple[int, str | None]] = Counter()
    slowest = 0.0
    async with httpx.AsyncClient(base_url=stack.base, headers=headers, timeout=60) as http:
        semaphore = asyncio.Semaphore(5)

        async def send(i: int) -> None:
            nonlocal slowest
            async with semaphore:
                started = time.monotonic()
                response = await http.post("/v1/clusters", content=body, headers={"Idempotency-Key": f"big-{i % 3}"})
                slowest = max(slowest, time.monotonic() - started)
                code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
                answers[(response.status_code, code)] += 1

        await asyncio.gather(*(send(i) for i in range(count)))
    assert stack.pool is not None
    operations = await stack.pool.fetchval("SELECT count(*) FROM operations WHERE organization_id = $1", org)
    clusters = await stack.pool.fetchval("SELECT count(*) FROM clusters WHERE organization_id = $1", org)
    keys = await stack.pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE organization_id = $1", org)
    ok = answers == Counter({(413, "PAYLOAD_TOO_LARGE"): count}) and operations == clusters == keys == 0
    verdict(
        "oversized payload",
        ok,
        f"{count} enqueues of {len(body) // 1000} KB (emoji labels): {dict(answers)} (slowest {slowest:.1f} s); "
        f"operations {operations}, clusters {clusters}, idempotency keys {keys}",
    )
    assert ok
