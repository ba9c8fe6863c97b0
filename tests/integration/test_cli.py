"""The `workerpool` command: clear refusals, enqueue, stats, dead letters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis
import yaml
from helpers import ROOT, TESTS, manifest, wait_until


def cli(*args: str, url: str | None = None, stdin: str | None = None, cwd=None):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    env.pop("REDIS_URL", None)
    if url:
        env["REDIS_URL"] = url
    return subprocess.run([sys.executable, "-m", "workerpool", *args], capture_output=True,
                          text=True, env=env, input=stdin, timeout=60, cwd=cwd)


@pytest.mark.parametrize(("spec", "expect"), [
    ({"handler": "handlers:echo", "minWorkers": 5, "maxWorkers": 2},
     "spec.minWorkers: 5 is invalid: must not exceed spec.maxWorkers (2)"),
    ({"handler": "handlers:echo", "minWorkers": -1}, "spec.minWorkers: -1 is invalid"),
    ({"handler": "nosuchmodule:f"}, "spec.handler: cannot import module 'nosuchmodule'"),
    ({"handler": "handlers:nosuchfunction"}, "has no attribute 'nosuchfunction'"),
    ({"handler": "handlers:echo", "errorHandler": "handlers:missing"}, "spec.errorHandler"),
    ({"handler": "handlers:echo", "replicas": 2}, "spec.replicas: 2 is invalid: unknown field"),
])
def test_run_refuses_bad_manifests_at_once(tmp_path, redis_url, spec, expect):
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(manifest("bad", **spec)))
    done = cli("run", str(path), url=redis_url)
    assert done.returncode != 0
    assert expect in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_run_refuses_unreadable_and_invalid_yaml(tmp_path):
    assert "cannot read the file" in cli("run", str(tmp_path / "missing.yaml")).stderr
    (tmp_path / "x.yaml").write_text("a: [")
    done = cli("run", str(tmp_path / "x.yaml"))
    assert done.returncode != 0 and "not valid YAML" in done.stderr and "Traceback" not in done.stderr


def test_enqueue_stats_and_dead_letters(start_pool, redis_url, r):
    pool = start_pool(manifest("c", handler="handlers:fail", minWorkers=1, maxWorkers=1,
                               maxRetries=0))
    pool.wait_workers(1, 0)
    done = cli("enqueue", "--queue", "c", '{"a": 1}', "0", '"s"', url=redis_url)
    assert done.returncode == 0, done.stderr
    ids = done.stdout.split()
    assert len(ids) == 3
    wait_until(lambda: r.llen("{c}:wp:dead") == 3, 15, what="3 dead letters")
    stats = json.loads(cli("stats", "--queue", "c", "--json", url=redis_url).stdout)
    assert (stats["dead_lettered"], stats["failed"], stats["backlog"]) == (3, 3, 0)
    assert [m["permanent"] for m in stats["masters"]] == [1]
    text = cli("stats", "--queue", "c", url=redis_url).stdout
    assert "worker[permanent]" in text and "dead_lettered  3" in text
    listing = cli("dead", "list", "--queue", "c", url=redis_url).stdout.splitlines()
    assert [line.split("\t")[0] for line in listing] == ids
    assert all("attempts=1" in line and "RuntimeError" in line for line in listing)
    assert cli("dead", "requeue", "--queue", "c", url=redis_url).stdout.strip() == "requeued 3"
    wait_until(lambda: r.llen("{c}:wp:dead") == 3 and r.llen("attempts") == 6, 15,
               what="requeued tasks to fail again")
    assert cli("dead", "purge", "--queue", "c", url=redis_url).stdout.strip() == "purged 3"


def test_enqueue_from_a_file_and_bad_payloads(tmp_path, redis_url, r):
    lines = "\n".join(json.dumps({"n": n}) for n in range(100)) + "\n"
    done = cli("enqueue", "--queue", "f", "--file", "-", url=redis_url, stdin=lines)
    assert done.returncode == 0 and len(done.stdout.split()) == 100 and r.llen("f") == 100
    bad = cli("enqueue", "--queue", "f", "{oops", url=redis_url)
    assert bad.returncode == 2 and "PAYLOAD #1: '{oops' is not valid JSON" in bad.stderr
    assert r.llen("f") == 100


def test_unreachable_redis_is_a_clear_error():
    done = cli("stats", "--queue", "x", "--redis-url", "redis://:secret@127.0.0.1:1/0")
    assert done.returncode == 1 and "Redis at redis://:***@127.0.0.1:1/0" in done.stderr
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


def test_redis_password_never_shows_in_logs_or_process_titles(start_pool, tmp_path):
    from helpers import RedisServer

    own = RedisServer(tmp_path).start()
    try:
        redis.Redis.from_url(own.url).config_set("requirepass", "hunter2-secret")
        url = own.url.replace("redis://", "redis://:hunter2-secret@")
        pool = start_pool(manifest("secret", handler="handlers:echo", minWorkers=2, maxWorkers=2),
                          "--redis-url", url, url=url)
        pool.wait_workers(2, 0)
        from workerpool import Queue

        q = Queue("secret", redis_url=url)
        assert q.result(q.enqueue("x"), timeout=10) == "x"
        assert "hunter2" not in repr(q)
        titles = [" ".join(p.cmdline()) for p in [pool.ps, *pool.workers()]]
        assert all(t.startswith("workerpool: ") for t in titles), titles
        assert not any("hunter2" in t for t in titles)
        own.stop()  # an outage: the errors logged must not carry the URL's password either
        pool.wait_for_event("redis unavailable, retrying")
        assert "hunter2" not in pool.log()  # nowhere in the log's text, whatever the event
    finally:
        own.stop()
