"""Where a pool runs, as opposed to what its manifest says.

A `PoolSpec` is the manifest: it may name a Redis inline (`spec.redis.url`) or through a Secret
(`spec.redis.urlFrom`, which only the operator can read), or not at all (`workerpool run`
starts an embedded Redis). A `Target` is the answer, resolved once — by the runner from the
flag, the environment, the file or the embedded server; by the operator from the Secret —
and then handed to the master, its pools and its workers, which never look at the URL fields
of the spec again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .connection import parse_redis_url, redact
from .errors import SpecError
from .spec import PoolSpec


@dataclass(frozen=True, slots=True)
class Target:
    """The resolved Redis connection of one pool. The URL may carry a password: `repr` and
    `str` show it redacted."""

    redis_url: str

    def __post_init__(self) -> None:
        parse_redis_url("redis_url", self.redis_url)  # SpecError naming the problem

    def __str__(self) -> str:
        return redact(self.redis_url)

    def __repr__(self) -> str:
        return f"Target({redact(self.redis_url)!r})"

    @classmethod
    def of(cls, spec: PoolSpec, override: str | None = None,
           fallback: Callable[[], str] | None = None) -> Target:
        """`override` (--redis-url or REDIS_URL), else spec.redis.url, else `fallback()` (an
        embedded Redis, started on first call); SpecError if there is none. A pool that names
        a Secret never falls back: the Secret is the operator's to read."""
        url = override or spec.redis_url
        if url:
            return cls(url)
        if fallback is not None and spec.redis_url_from is None:
            return cls(fallback())
        if spec.redis_url_from is not None:
            raise SpecError(f"{spec.name}: spec.redis.urlFrom", spec.redis_url_from.name,
                            "a Secret is only read by the operator; locally pass --redis-url or "
                            "REDIS_URL")
        raise SpecError(f"{spec.name}: spec.redis.url", None,
                        "required here: spec.redis.url, --redis-url or REDIS_URL")
