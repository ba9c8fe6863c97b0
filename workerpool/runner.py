"""`workerpool run`: manifests + (maybe) an embedded Redis + the master."""

from __future__ import annotations

from . import logs
from .embedded import EmbeddedRedis
from .errors import SpecError
from .manifests import load_file
from .master import Master
from .spec import PoolSpec


def run_local(pool_file: str, redis_url: str | None, data_dir: str,
              metrics_address: str | None = None) -> int:
    """Run the master for every pool in `pool_file` until it is stopped; return its exit code."""
    specs = load_file(pool_file, redis_url)
    embedded = None
    if any(s.redis_url is None for s in specs):
        _refuse_secret_refs(specs)
        embedded = EmbeddedRedis(data_dir).start()
        logs.event("embedded Redis started", url=embedded.url, data=str(embedded.data_dir))
    fallback = embedded.url if embedded else None

    def read_specs() -> list[PoolSpec]:
        return [s if s.redis_url else s.with_redis_url(fallback)
                for s in load_file(pool_file, redis_url)]

    try:
        return Master(read_specs(), reload=read_specs, metrics_address=metrics_address).run()
    finally:
        if embedded:
            embedded.stop()


def _refuse_secret_refs(specs: list[PoolSpec]) -> None:
    for s in specs:
        if s.redis_url is None and s.redis_url_from is not None:
            raise SpecError(f"{s.name}: spec.redis.urlFrom", s.redis_url_from.name,
                            "a Secret is only read by the operator; locally pass --redis-url or REDIS_URL")
