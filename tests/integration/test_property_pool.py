"""Property: whatever bytes producers push and whatever handlers do, a live pool ends every task
done or dead-lettered, stays up, exits 0 on Ctrl+C and leaves no process behind."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

import psutil
import pytest
import redis
from helpers import RunningPool, manifest, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workerpool import Queue, TaskFailed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)
survivable = st.one_of(
    st.builds(lambda v: {"do": "return", "value": v}, json_values),
    st.sampled_from([{"do": "return_surrogate"}, {"do": "return_set"}, {"do": "raise"},
                     {"do": "raise_bad_str"}, {"do": "raise_base"}, {"do": "raise_surrogate"},
                     {"do": "keyboard_interrupt"}, {"do": "sys_exit", "code": 1},
                     {"do": "spawn"}, {"do": "fork"}, {"do": "mutate_and_fail"}, {"do": "ignore_term"},
                     {"do": "block_term"},
                     {"do": "return", "value": "x", "on_error": "sys_exit"}]),
    st.builds(lambda s: {"do": "sleep", "s": s}, st.sampled_from([0.0, 0.05, 1.5])),  # 1.5 > limit
)
killers = st.sampled_from([{"do": "os_exit", "code": 0}, {"do": "os_exit", "code": 3},
                           {"do": "sigkill"}, {"do": "raise", "on_error": "os_exit"}])
foreign = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"NaN", b"[" * 2000, b'{"__wp__":1,"attempts":', b'{"__wp__":1,"attempts":1,"id":"x"}',
                     b'{"__wp__":1,"attempts":0,"id":"y","raw":"NaN"}']),
    json_values.map(lambda v: json.dumps(v).encode()),
)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(tasks=st.lists(survivable, max_size=8), deaths=st.lists(killers, max_size=2),
       elements=st.lists(foreign, max_size=8))
def test_a_live_pool_ends_every_task_and_stops_clean(redis_server, tasks, deaths, elements):
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    with tempfile.TemporaryDirectory() as tmp:
        doc = manifest("prop", handler="handlers:hostile", errorHandler="handlers:on_error_hostile",
                       minWorkers=1, maxWorkers=3, maxRetries=1, retryDelaySeconds=0,
                       retryDelayMaxSeconds=0, taskTimeoutSeconds=1)
        pool = RunningPool(Path(tmp), redis_server.url, doc)
        try:
            pool.wait_workers(1, 0)  # up, with its signal handlers in place
            q = Queue("prop", redis_url=redis_server.url)
            ids = q.enqueue_many(tasks + deaths)
            if elements:
                r.rpush("prop", *elements)
            for task_id in ids:
                try:
                    q.result(task_id, timeout=120)
                except TaskFailed:
                    pass
            wait_until(lambda: _settled(r), 60, what="every foreign element to end")
            assert pool.proc.poll() is None  # the master stayed up
            stats = q.stats()
            assert stats["processed"] + stats["dead_lettered"] == len(ids) + len(elements)
            started = pool.ps.children(recursive=True)  # workers and what handlers spawned
            pool.signal(signal.SIGINT)
            assert pool.stop(60) == 0
            assert not [p for p in started if _alive(p)]
            assert not pool.stray_lines()  # nothing but JSON events: no traceback printed
        finally:
            pool.kill()
            r.close()


def _settled(r: redis.Redis) -> bool:
    return (r.llen("prop") == 0 and r.zcard("{prop}:wp:delayed") == 0
            and not any(r.llen(k) for k in r.keys("{prop}:wp:processing:*")))


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
