"""The CLI refuses bad input with one line naming the argument, the value and what is allowed."""

from __future__ import annotations

import json

import pytest

from .test_cli import cli

BAD = [
    (("enqueue", "--queue", "", "1"), "--queue: ''"),
    (("enqueue", "--queue", "two words", "1"), "--queue: 'two words'"),
    (("enqueue", "--queue", "tab\there", "1"), "--queue:"),
    (("enqueue", "--queue", "not-utf8-\udcff", "1"), "--queue:"),
    (("stats", "--queue", " "), "--queue: ' '"),
    (("dead", "list", "--queue", ""), "--queue: ''"),
    (("enqueue", "--queue", "q", "--redis-url", "http://localhost:6379", "1"), "--redis-url: 'http://"),
    (("enqueue", "--queue", "q", "--redis-url", "redis://localhost:port/0", "1"), "--redis-url:"),
    (("enqueue", "--queue", "q", "--redis-url", "redis://localhost:6379/db", "1"), "--redis-url:"),
    (("enqueue", "--queue", "q", "--redis-url", "redis+sentinel://u:pw@s1:26379", "1"),
     "--redis-url: 'redis+sentinel://u:***@s1:26379'"),  # no service name; password hidden
    (("enqueue", "--queue", "q", "--redis-url", "redis+cluster://n1:7000/3", "1"), "only 0"),
    (("enqueue", "--queue", "q", "--redis-url", "redis+cluster://n1:99999", "1"), "1 to 65535"),
    (("enqueue", "--queue", "q", "NaN"), "PAYLOAD #1: 'NaN' is not valid JSON"),
    (("enqueue", "--queue", "q", "[1, Infinity]"), "PAYLOAD #1: '[1, Infinity]' is not valid JSON"),
    (("enqueue", "--queue", "q", '"\udcff"'), "PAYLOAD #1:"),  # argv bytes that are not UTF-8
    (("enqueue", "--queue", "q", "[" * 10_000 + "]" * 10_000), "PAYLOAD #1:"),
    (("enqueue", "--queue", "q"), "PAYLOAD"),
    (("demo", "--tasks", "0"), "--tasks"),
    (("demo", "--tasks", "many"), "--tasks"),
    (("nosuchcommand",), "nosuchcommand"),
]


@pytest.mark.parametrize(("args", "named"), BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_arguments_are_refused_in_one_line(redis_url, r, args, named):
    done = cli(*args, url=redis_url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert not r.keys("*")  # nothing was pushed anywhere


def test_a_password_in_a_refused_url_is_not_shown(redis_url):
    done = cli("stats", "--queue", "q", "--redis-url", "redis://:s3cret@localhost:port/0")
    assert done.returncode == 2 and "--redis-url" in done.stderr and "s3cret" not in done.stderr


def test_dead_list_prints_one_line_per_entry(redis_url, r):
    entry = {"id": "t1", "queue": "q", "attempts": 2, "error": "ValueError: line one\nline two\r\n",
             "traceback": "Traceback ...\n", "failed_at": 1.0, "item": "x"}
    r.rpush("{q}:wp:dead", json.dumps(entry), b"not ours \xff", json.dumps([1, 2]))
    done = cli("dead", "list", "--queue", "q", url=redis_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0] == "t1\tattempts=2\tValueError: line one\\nline two\\r\\n"
    assert all("not a workerpool dead-letter entry" in x for x in lines[1:])
