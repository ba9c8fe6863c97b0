"""Target: where a pool runs, resolved once from the flag, the manifest or a fallback."""

from __future__ import annotations

import pytest

from workerpool.errors import SpecError
from workerpool.spec import parse_spec
from workerpool.target import Target

INLINE = parse_spec("p", {"handler": "m:f", "redis": {"url": "redis://:inline-pw@h1:6379/0"}})
SECRET = parse_spec("p", {"handler": "m:f",
                          "redis": {"urlFrom": {"secretKeyRef": {"name": "s", "key": "url"}}}})
NONE = parse_spec("p", {"handler": "m:f"})


def _never() -> str:
    raise AssertionError("the fallback must not be called when a URL is known")


def test_the_override_beats_the_manifest_and_the_manifest_beats_the_fallback():
    assert Target.of(INLINE, "redis://flag:1/0", _never) == Target("redis://flag:1/0")
    assert Target.of(INLINE, None, _never) == Target("redis://:inline-pw@h1:6379/0")
    assert Target.of(NONE, None, lambda: "redis://embedded:2/0") == Target("redis://embedded:2/0")


def test_the_fallback_is_called_only_when_needed():
    calls: list[str] = []

    def fallback() -> str:
        calls.append("x")
        return "redis://embedded:2/0"

    Target.of(INLINE, None, fallback)
    Target.of(NONE, "redis://flag:1/0", fallback)
    assert calls == []
    Target.of(NONE, None, fallback)
    assert calls == ["x"]


def test_a_secret_reference_never_falls_back_to_an_embedded_redis():
    with pytest.raises(SpecError) as e:
        Target.of(SECRET, None, _never)
    assert "spec.redis.urlFrom" in str(e.value) and "REDIS_URL" in str(e.value)
    assert Target.of(SECRET, "redis://flag:1/0") == Target("redis://flag:1/0")


def test_no_url_at_all_is_a_one_line_error_naming_the_field():
    with pytest.raises(SpecError) as e:
        Target.of(NONE)
    assert "spec.redis.url" in str(e.value) and "\n" not in str(e.value)


def test_the_password_stays_out_of_repr_and_str():
    target = Target("redis://:s3cret@h:6379/0")
    assert "s3cret" not in repr(target) and "s3cret" not in str(target)
    assert "h:6379" in str(target) and "h:6379" in repr(target)


def test_a_bad_url_is_refused_at_construction():
    with pytest.raises(SpecError) as e:
        Target("http://h:6379")
    assert "redis://" in str(e.value)
