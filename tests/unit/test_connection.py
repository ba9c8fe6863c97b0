"""Redis URLs: one server, Sentinel and Cluster forms, parsed once; errors hide the password."""

from __future__ import annotations

import pytest

from workerpool.connection import parse_redis_url, redact
from workerpool.errors import SpecError


def test_a_plain_url_is_one_server():
    target = parse_redis_url("--redis-url", "redis://:pw@localhost:6379/2")
    assert target.kind == "server" and "pw" not in repr(target)


def test_sentinel_form():
    t = parse_redis_url("x", "redis+sentinel://app:p%40ss@s1:26379,s2/orders/3?sentinel_password=sp")
    assert (t.kind, t.hosts, t.service, t.db, t.tls) == (
        "sentinel", (("s1", 26379), ("s2", 26379)), "orders", 3, False)
    assert (t.username, t.password, t.sentinel_auth) == ("app", "p@ss", {"password": "sp"})
    assert "p@ss" not in repr(t) and "sp" not in repr(t)


def test_cluster_form_with_tls():
    t = parse_redis_url("x", "rediss+cluster://n1:7000,n2:7001")
    assert (t.kind, t.hosts, t.tls, t.db) == ("cluster", (("n1", 7000), ("n2", 7001)), True, 0)


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://h:1", "a URL starting with redis://"),
    ("redis+sentinel://s1:26379", "the service name"),
    ("redis+sentinel://s1:port/svc", "a port from 1 to 65535"),
    ("redis+cluster://n1:70000", "a port from 1 to 65535"),
    ("redis+cluster://n1:7000/2", "Redis Cluster: only 0"),
    ("redis+cluster:///0", "at least one host:port"),
])
def test_refusals_name_the_form(url, allowed):
    with pytest.raises(SpecError) as e:
        parse_redis_url("spec.redis.url", url)
    assert e.value.field == "spec.redis.url" and allowed in str(e.value)


def test_errors_and_logs_never_show_a_password():
    with pytest.raises(SpecError) as e:
        parse_redis_url("x", "redis+sentinel://u:hunter2@s1:bad/svc")
    assert "hunter2" not in str(e.value)
    assert redact("redis+sentinel://u:hunter2@a:1/s?sentinel_password=pw2&x=1") == \
        "redis+sentinel://u:***@a:1/s?sentinel_password=***&x=1"


def test_wait_replicas_is_taken_out_of_the_url():
    t = parse_redis_url("x", "redis://:pw@h:1/0?wait_replicas=1&wait_timeout_ms=50&socket_timeout=3")
    assert (t.wait_replicas, t.wait_timeout_ms) == (1, 50)
    assert "wait_" not in t.url and "socket_timeout=3" in t.url  # redis-py refuses unknown options
    s = parse_redis_url("x", "redis+sentinel://s1/svc?wait_replicas=2")
    assert (s.wait_replicas, s.wait_timeout_ms) == (2, 100)
    assert parse_redis_url("x", "redis://h:1/0").wait_replicas == 0


@pytest.mark.parametrize(("url", "allowed"), [
    ("redis://h:1/0?wait_replicas=-1", "wait_replicas: a whole number"),
    ("redis://h:1/0?wait_timeout_ms=soon", "wait_timeout_ms: a whole number"),
    ("redis+cluster://n1:7000?wait_replicas=1", "no wait_replicas with Redis Cluster"),
])
def test_wait_refusals(url, allowed):
    with pytest.raises(SpecError, match=allowed):
        parse_redis_url("spec.redis.url", url)


def test_the_manifest_takes_every_form_and_names_the_field_when_wrong():
    from workerpool.spec import parse_spec
    for url in ("redis+sentinel://s1,s2/svc", "rediss+cluster://n1:7000", "redis://h/0"):
        assert parse_spec("p", {"handler": "m:f", "redis": {"url": url}}).redis_url == url
    with pytest.raises(SpecError) as e:
        parse_spec("p", {"handler": "m:f", "redis": {"url": "redis+sentinel://:pw@s1"}})
    assert e.value.field == "spec.redis.url" and "pw" not in str(e.value)
