"""`workerpool demo`: the Master-Worker story on an embedded Redis, ending by itself.

The master runs 3 permanent workers (max 10). A producer process waits for the pool, pushes a
burst, waits for every result, waits until the idle temporaries have exited, then sends the
master SIGINT, as a user's Ctrl+C would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from . import logs
from .embedded import EmbeddedRedis
from .errors import ResultTimeout, TaskFailed
from .master import Master
from .queue import Queue
from .spec import parse_spec
from .target import Target

POOL = {"handler": "workerpool.demo:handle", "errorHandler": "workerpool.demo:report",
        "minWorkers": 3, "maxWorkers": 10, "idleTimeoutSeconds": 3, "maxRetries": 2,
        "retryDelaySeconds": 0.2, "prefetch": 1}
FAILING_TASK = 7  # this task fails every time: it shows retries, a dead letter and the callback


def handle(payload: dict[str, Any]) -> dict[str, Any]:
    """The demo's business handler: 50 ms of 'work'; task 7 always fails."""
    time.sleep(0.05)
    if payload["n"] == FAILING_TASK:
        raise ValueError(f"task {payload['n']} is the demo's failing task")
    return {"n": payload["n"], "squared": payload["n"] ** 2}


def report(payload: Any, error: str, attempts: int) -> None:
    """The demo's error callback."""
    logs.event("errorHandler called", payload=payload, error=error, attempts=attempts)


def run_demo(tasks: int, data_dir: str) -> int:
    embedded = EmbeddedRedis(data_dir).start()
    logs.event("embedded Redis started", url=embedded.url)
    spec = parse_spec("demo", {**POOL, "queue": f"demo-{os.getpid()}"})
    producer = subprocess.Popen([sys.executable, "-m", "workerpool.demo", embedded.url, spec.queue,
                                 str(tasks), str(os.getpid())])
    try:
        return Master([(spec, Target(embedded.url))]).run()
    finally:
        if producer.poll() is None:
            producer.terminate()
        embedded.stop()


def _producer(url: str, queue: str, tasks: int, master_pid: int) -> None:
    q = Queue(queue, redis_url=url)
    _wait(lambda: any(m["permanent"] == 3 for m in q.stats()["masters"]), 30)
    say(f"pushing a burst of {tasks} tasks")
    started = time.monotonic()
    ids = q.enqueue_many({"n": n} for n in range(tasks))
    done = failed = 0
    for task_id in ids:
        try:
            q.result(task_id, timeout=120)
            done += 1
        except (TaskFailed, ResultTimeout):
            failed += 1
    say(f"{done} tasks done, {failed} dead-lettered, in {time.monotonic() - started:.1f} s")
    _wait(lambda: all(m["temporary"] == 0 for m in q.stats()["masters"]), 60)
    say("the temporary workers have exited; stopping the master (SIGINT, as Ctrl+C)")
    os.kill(master_pid, signal.SIGINT)


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} producer[{os.getpid()}] {text}", file=sys.stderr, flush=True)


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("demo producer: timed out waiting for the pool")
        time.sleep(0.1)  # polling the pool's published numbers, bounded by the deadline


if __name__ == "__main__":
    _producer(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
