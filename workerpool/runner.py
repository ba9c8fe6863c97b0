"""`workerpool run`: manifests + (maybe) an embedded Redis + the master."""

from __future__ import annotations

from collections.abc import Callable

from . import logs
from .embedded import EmbeddedRedis
from .manifests import load_file
from .master import Master
from .spec import PoolSpec
from .target import Target


def run_local(pool_file: str, redis_url: str | None, data_dir: str,
              metrics_address: str | None = None) -> int:
    """Run the master for every pool in `pool_file` until it is stopped; return its exit code.

    Each pool runs on `redis_url` (--redis-url or REDIS_URL) if given, else on its
    spec.redis.url, else on an embedded Redis, started here only if some pool needs it.
    """
    embedded: EmbeddedRedis | None = None

    def embedded_url() -> str:
        nonlocal embedded
        if embedded is None:
            embedded = EmbeddedRedis(data_dir).start()
            logs.event("embedded Redis started", url=embedded.url, data=str(embedded.data_dir))
        return embedded.url

    def resolve(fallback: Callable[[], str] | None) -> list[tuple[PoolSpec, Target]]:
        return [(s, Target.of(s, redis_url, fallback)) for s in load_file(pool_file)]

    try:
        pools = resolve(embedded_url)
        # on reload (SIGHUP) a pool may use the embedded Redis if one runs, never start one:
        # the master's loop is no place to wait for a server to boot
        started = embedded.url if embedded else None
        return Master(pools, reload=lambda: resolve((lambda: started) if started else None),
                      metrics_address=metrics_address).run()
    finally:
        if embedded:
            embedded.stop()
