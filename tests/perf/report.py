"""Merges the reports of `make bench` into `.clusterflow/bench/report.{json,md}` (the one the
README quotes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / ".clusterflow" / "bench"


def main() -> int:
    parts = {name: json.loads((OUT / f"{name}.json").read_text()) for name in ("control_plane", "stream_latency")}
    stream = parts["stream_latency"]
    lines = [(OUT / "control_plane.md").read_text().rstrip(), ""]
    s, raw = stream["commit_to_sse_receipt"], stream["raw_listen_notify_round_trip"]
    p = stream["parameters"]
    lines += [
        f"3. Progress latency, commit -> SSE receipt, {p['streams']} streams, {p['events_per_second']} events/s: "
        f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms beside raw LISTEN/NOTIFY p50 {raw['p50_ms']} ms, "
        f"p99 {raw['p99_ms']} ms (target p99 < {stream['target_p99_ms']} ms: "
        f"{'meets' if stream['meets_target'] else 'MISSES'}; `python tests/perf/bench_stream_latency.py`).",
        "",
    ]
    runs = OUT / "update_runs.json"
    if runs.exists():  # tests/perf/bench_update_runs.py
        parts["update_runs"] = json.loads(runs.read_text())
        lines += [(OUT / "update_runs.md").read_text().rstrip(), ""]
    (OUT / "report.json").write_text(json.dumps(parts, indent=2) + "\n")
    (OUT / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
