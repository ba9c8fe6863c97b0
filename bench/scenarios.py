"""Scenarios where batching meets autoscaling, each next to an in-run fixed-pool reference.

    python -m bench bursts [--runs 2] [--gap 20] [--src DIR] [--json out.json]
    python -m bench mixed  [--runs 2] [--clumps 5] [--src DIR] [--json out.json]
    python -m bench noop   [--runs 3] [--tasks 20000] [--src DIR] [--json out.json]

bursts: 3 bursts of 1,000 tasks sleeping 50 ms, enqueued one by one, `--gap` s apart, into a
pool of min 2, max 16, idle 2 s (INFO log) and into the same pool with minWorkers = maxWorkers.
mixed: clumps of 300 tasks 3 s apart, 2 % sleeping 1 s and the rest 1 ms, into min 2, max 8
and into a fixed 8: how long the short ones wait to start. noop: 20,000 no-op tasks with
2 workers at WARNING and INFO. `--src` adds the same pools run from another source tree (e.g.
`git archive <commit> workerpool | tar -x -C DIR`), to compare with it in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from workerpool import Queue
from workerpool.protocol import Keys

from .run import Pool, Redis, pool_drain, wait_until

WINDOW_S = 120.0  # process-seconds are counted over this long from the first enqueue


class Sampler(threading.Thread):
    """The pool's worker count every 10 ms, as (time.time(), count)."""

    def __init__(self, pool: Pool) -> None:
        super().__init__(daemon=True)
        self.pool = pool
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.samples.append((time.time(), self.pool.worker_count()))

    def first(self, after: float, pred: Any) -> float | None:
        return next((t for t, n in self.samples if t >= after and pred(n)), None)


def results(rd: Redis, queue: str, ids: list[str]) -> list[list[float]]:
    """[enqueued, started, ended, pid] per task, from the stored results."""
    pipe = rd.client.pipeline()
    for task_id in ids:
        pipe.lindex(Keys(queue).result(task_id), 0)
    return [json.loads(raw)["value"] for raw in pipe.execute()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def started_pool(rd: Redis, name: str, spec: dict[str, Any], src: Path | None) -> Pool:
    rd.client.flushall()
    pool = Pool(rd.url, name, "INFO", src, handler="bench.handlers:sleep_stamped", **spec)
    q = Queue(name, client=rd.client)
    wait_until(lambda: pool.worker_count() == spec["minWorkers"] and q.stats()["masters"], 30)
    return pool


def processed(rd: Redis, queue: str) -> int:
    return int(rd.client.hget(Keys(queue).stats, "processed") or 0)


def bursts(rd: Redis, spec: dict[str, Any], gap: float, src: Path | None) -> dict[str, Any]:
    """The issue-13 scenario for one pool; see the module docstring."""
    lo, hi = spec["minWorkers"], spec["maxWorkers"]
    pool = started_pool(rd, "bursts", spec, src)
    q = Queue("bursts", client=rd.client)
    sampler = Sampler(pool)
    sampler.start()
    ids: list[list[str]] = []
    t0 = time.time()
    try:
        for b in range(3):
            time.sleep(max(0.0, t0 + b * gap - time.time()))  # pacing the bursts
            ids.append([q.enqueue({"t": time.time(), "s": 0.05}) for _ in range(1000)])
            wait_until(lambda b=b: processed(rd, "bursts") >= 1000 * (b + 1), 120, 0.01)
        wait_until(lambda: pool.worker_count() == lo, 30, 0.01)
        time.sleep(0.05)  # one more sample at the minimum
    finally:
        sampler.done.set()
        sampler.join()
        pool.stop()
    out: dict[str, Any] = {"drain_s": [], "to_max_s": [], "back_to_min_s": [], "finish_spread_s": []}
    latencies = []
    for burst_ids in ids:
        rows = results(rd, "bursts", burst_ids)
        first, last = min(r[0] for r in rows), max(r[2] for r in rows)
        out["drain_s"].append(last - first)
        latencies += [r[1] - r[0] for r in rows]
        last_end_by_pid: dict[float, float] = {}
        for r in rows:
            last_end_by_pid[r[3]] = max(last_end_by_pid.get(r[3], 0.0), r[2])
        out["finish_spread_s"].append(max(last_end_by_pid.values()) - min(last_end_by_pid.values()))
        if lo < hi:
            at_max = sampler.first(first, lambda n: n >= hi)
            at_min = sampler.first(last, lambda n: n <= lo)
            out["to_max_s"].append(at_max - first if at_max else float("nan"))
            out["back_to_min_s"].append(at_min - last if at_min else float("nan"))
    out["latency_p50_ms"] = pct(latencies, 0.5) * 1000
    out["latency_p99_ms"] = pct(latencies, 0.99) * 1000
    out["process_s"] = process_seconds(sampler.samples, t0, lo)
    return out


def process_seconds(samples: list[tuple[float, int]], t0: float, minimum: int) -> float:
    """Worker count integrated over WINDOW_S from t0; after the last sample the pool sat at its
    minimum (sampling stops once it is back there, and an idle pool does not change size)."""
    total, prev_t, prev_n = 0.0, t0, minimum
    for t, n in samples:
        if t > t0 + WINDOW_S:
            break
        total += prev_n * (t - prev_t)
        prev_t, prev_n = t, n
    return total + minimum * max(0.0, t0 + WINDOW_S - prev_t)


def mixed(rd: Redis, spec: dict[str, Any], clumps: int, src: Path | None) -> dict[str, Any]:
    """Clumps of 300 tasks, 2 % of them 1 s long and the rest 1 ms, 3 s apart: how long the
    short ones wait to start (enqueue -> start), which is where hoarding shows: a short task
    claimed behind a long one waits for it while other workers are idle."""
    pool = started_pool(rd, "mixed", spec, src)
    q = Queue("mixed", client=rd.client)
    rng = random.Random(13)
    durations = [1.0 if rng.random() < 0.02 else 0.001 for _ in range(clumps * 300)]
    try:
        t0 = time.monotonic()
        ids = []
        for c in range(clumps):
            time.sleep(max(0.0, t0 + c * 3 - time.monotonic()))  # pacing the clumps
            ids += [q.enqueue({"t": time.time(), "s": s}) for s in durations[c * 300:(c + 1) * 300]]
        wait_until(lambda: processed(rd, "mixed") >= len(ids), 120, 0.01)
    finally:
        pool.stop()
    rows = results(rd, "mixed", ids)
    short = [(r[1] - r[0]) * 1000 for r, s in zip(rows, durations, strict=True) if s < 1]
    return {"short_pickup_p50_ms": pct(short, 0.5), "short_pickup_p99_ms": pct(short, 0.99),
            "short_pickup_max_ms": max(short), "workers_seen": len({r[3] for r in rows})}


BURST_POOLS = {"min 2 max 16": {"minWorkers": 2, "maxWorkers": 16, "idleTimeoutSeconds": 2},
               "fixed 16": {"minWorkers": 16, "maxWorkers": 16, "idleTimeoutSeconds": 2}}
MIXED_POOLS = {"min 2 max 8": {"minWorkers": 2, "maxWorkers": 8, "idleTimeoutSeconds": 2},
               "fixed 8": {"minWorkers": 8, "maxWorkers": 8, "idleTimeoutSeconds": 2}}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["bursts", "mixed", "noop"])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--gap", type=float, default=20.0, help="seconds between burst starts")
    ap.add_argument("--clumps", type=int, default=5, help="mixed: clumps of 300 tasks")
    ap.add_argument("--tasks", type=int, default=20000, help="noop: tasks per drain")
    ap.add_argument("--src", type=Path, action="append", default=[],
                    help="also run the pools from this source tree (repeatable)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    trees: list[tuple[str, Path | None]] = [("", None)]
    trees += [(f" [{src}]", src.resolve()) for src in args.src]
    rd = Redis()
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for _ in range(args.runs):
            load = os.getloadavg()[0]
            for suffix, src in trees:
                for label, figures in one_run(rd, args, src):
                    runs.setdefault(label + suffix, []).append({**figures, "load_1m": load})
    finally:
        rd.stop()
    print(f"redis {rd.version}, {os.cpu_count()} CPUs, 1-min load at start of each run: "
          + ", ".join(f"{r['load_1m']:.2f}" for r in next(iter(runs.values()))))
    for label, reps in runs.items():
        for i, rep in enumerate(reps):
            print(f"{label:40} run {i + 1}: " + "  ".join(f"{k}={_show(v)}" for k, v in rep.items()
                                                        if k != "load_1m"))
    print()
    print(table(args.scenario, runs))
    if args.json:
        args.json.write_text(json.dumps({"scenario": args.scenario, "redis": rd.version,
                                         "runs": runs}, indent=2))


def one_run(rd: Redis, args: argparse.Namespace, src: Path | None) -> list[tuple[str, dict[str, Any]]]:
    if args.scenario == "bursts":
        return [(label, bursts(rd, spec, args.gap, src)) for label, spec in BURST_POOLS.items()]
    if args.scenario == "mixed":
        return [(label, mixed(rd, spec, args.clumps, src)) for label, spec in MIXED_POOLS.items()]
    out = []
    for level in ("WARNING", "INFO"):
        out.append((f"noop 2 workers {level}", pool_drain(rd, args.tasks, level, src)))
    return out


COLUMNS = {
    "bursts": [("drain s per burst", "drain_s", "{:.2f}"),
               ("latency p50 ms", "latency_p50_ms", "{:,.0f}"),
               ("latency p99 ms", "latency_p99_ms", "{:,.0f}"),
               ("worker process-s (120 s)", "process_s", "{:,.0f}"),
               ("2 -> max s", "to_max_s", "{:.2f}"),
               ("back to min s", "back_to_min_s", "{:.2f}"),
               ("workers finished apart s", "finish_spread_s", "{:.2f}")],
    "mixed": [("short pickup p50 ms", "short_pickup_p50_ms", "{:.1f}"),
              ("short pickup p99 ms", "short_pickup_p99_ms", "{:.1f}"),
              ("short pickup max ms", "short_pickup_max_ms", "{:.0f}")],
    "noop": [("drain tasks/s", "tasks_per_s", "{:,.0f}"),
             ("round trips / task", "round_trips_per_task", "{:.3f}"),
             ("worker USS ready MiB", "worker_uss_idle_mib", "{:.2f}"),
             ("worker USS after MiB", "worker_uss_after_mib", "{:.2f}")],
}
REFERENCE = {"bursts": "fixed 16", "mixed": "fixed 8", "noop": "noop 2 workers WARNING"}


def table(scenario: str, runs: dict[str, list[dict[str, Any]]]) -> str:
    """Medians over runs (per burst for lists) as a Markdown table, with each figure's ratio to
    the in-run reference (this tree's fixed pool; WARNING for noop) in brackets."""
    cols = COLUMNS[scenario]
    lines = ["| pool | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, reps in runs.items():
        ref = runs.get(REFERENCE[scenario])
        cells = []
        for _, key, fmt in cols:
            value = _median(reps, key)
            ref_value = _median(ref, key) if ref and ref is not reps else None
            cells.append(_cell(value, ref_value, fmt))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _median(reps: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in reps]
    if values and isinstance(values[0], list):
        return [statistics.median(v) for v in zip(*values, strict=True)] or None
    return statistics.median(values)


def _cell(value: Any, ref: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        text = " / ".join(fmt.format(v) for v in value)
        if isinstance(ref, list) and ref:
            text += " (" + " / ".join(f"{v / r:.2f}x" for v, r in zip(value, ref, strict=True)) + ")"
        return text
    text = fmt.format(value)
    return text + (f" ({value / ref:.2f}x)" if ref else "")


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "/".join(f"{v:.2f}" for v in value)
    return f"{value:.2f}" if isinstance(value, float) else str(value)

