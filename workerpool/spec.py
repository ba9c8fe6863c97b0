"""The WorkerPool spec: fields, defaults and validation, with no I/O.

FIELDS is the one source of truth: the local validator reads it, and so does
``openapi_schema()``, which the CRD in deploy/ is checked against by a test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from .connection import parse_redis_url, redact
from .errors import SpecError
from .fields import Field, ObjectField, check_object, check_scalar, no_unknown, schema_of, short

API_VERSION = "workerpool.dev/v1alpha1"
KIND = "WorkerPool"
# Above this the per-worker shared-memory table would grow for nothing; no pod has 1,000 cores.
MAX_WORKERS_LIMIT = 1000
# Worker pods of one pool, at most: far past one node, and a bound for the CRD's schema.
MAX_PODS_LIMIT = 1000

# The CRD uses the same patterns (workerpool/operator/crd.py): keep them ASCII and RE2-compatible.
REF_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
QUEUE_PATTERN = r"^\S+$"
QUEUE_MAX_LENGTH = 200
_REF = re.compile(REF_PATTERN)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_QUEUE = re.compile(QUEUE_PATTERN)


FIELDS: tuple[Field, ...] = (
    Field("handler", "handler", "string", None, description="module:function called with each payload"),
    Field("errorHandler", "error_handler", "string", None,
          description="module:function called as f(payload, error, attempts) after the last attempt"),
    Field("queue", "queue", "string", None, description="Redis list key; default metadata.name"),
    Field("minWorkers", "min_workers", "integer", 1, 0, MAX_WORKERS_LIMIT,
          "permanent workers, always alive", live=True),
    Field("maxWorkers", "max_workers", "integer", 4, 1, MAX_WORKERS_LIMIT,
          "permanent + temporary workers at most", live=True),
    Field("idleTimeoutSeconds", "idle_timeout_s", "number", 10.0, 0.1, 86400,
          "a temporary worker with no task for this long exits"),
    Field("maxRetries", "max_retries", "integer", 3, 0, 1000,
          "further attempts after the first failure"),
    Field("taskTimeoutSeconds", "task_timeout_s", "number", 300.0, 0, 86400 * 7,
          "a task running longer is stopped and counts as a failed attempt; 0 = no limit"),
    Field("retryDelaySeconds", "retry_delay_s", "number", 1.0, 0, 86400,
          "delay before the first retry; doubles on each later one, with jitter"),
    Field("retryDelayMaxSeconds", "retry_delay_max_s", "number", 300.0, 0, 86400 * 7,
          "upper bound of the retry delay"),
    Field("resultTtlSeconds", "result_ttl_s", "integer", 3600, 0, 86400 * 365,
          "how long a result is kept in Redis; 0 = results are not stored"),
    Field("maxTasksPerWorker", "max_tasks_per_worker", "integer", 0, 0, 10**9,
          "a worker is replaced after this many tasks; 0 = never"),
    Field("maxMemoryMiB", "max_memory_mib", "integer", 0, 0, 10**6,
          "a worker whose private memory exceeds this is replaced after its task; 0 = never"),
    Field("scaleUpBacklog", "scale_up_backlog", "integer", 1, 1, 10**6,
          "fork one temporary worker per this many waiting tasks that idle workers cannot take",
          live=True),
    Field("prefetch", "prefetch", "integer", 16, 1, 1000,
          "most tasks a worker claims in one round trip when the backlog is deep"),
    Field("shutdownGraceSeconds", "shutdown_grace_s", "number", 30.0, 0, 86400,
          "on stop, how long workers may finish their current task before they are killed"),
)
_BY_NAME = {f.name: f for f in FIELDS}
#: the attributes a master reloads in place on SIGHUP; a change to any other replaces the workers
LIVE_FIELDS = frozenset(f.attr for f in FIELDS if f.live)
#: the defaults by attribute, stated once (in FIELDS): for the validator, the CRD, the
#: dataclasses below and the scaling functions' own parameters
DEFAULTS: dict[str, Any] = {f.attr: f.default for f in FIELDS}
_REDIS_FIELDS = ("url", "urlFrom")

# spec.pods: where the pool runs when it spans pods (the operator's concern; a master ignores it)
POD_FIELDS: tuple[Field | ObjectField, ...] = (
    Field("min", "min_pods", "integer", 1, 0, MAX_PODS_LIMIT, "worker pods, at least"),
    Field("max", "max_pods", "integer", 1, 1, MAX_PODS_LIMIT, "worker pods, at most"),
    Field("stabilizationSeconds", "stabilization_s", "number", 2.0, 0, 3600,
          "tasks must wait with every pod saturated this long before pods are added"),
    Field("cooldownSeconds", "cooldown_s", "number", 60.0, 0, 86400,
          "the busy workers must fit in fewer pods this long before pods are removed"),
    Field("image", "image", "string", None, description="worker pod image; default: the operator's own"),
    Field("serviceAccountName", "service_account_name", "string", None,
          description="the worker pods' ServiceAccount; default: the namespace's default"),
    ObjectField("resources", "resources", "object", "the master container's requests and limits"),
    ObjectField("nodeSelector", "node_selector", "map", "node labels a worker pod needs"),
    ObjectField("tolerations", "tolerations", "array", "taints a worker pod tolerates"),
    ObjectField("affinity", "affinity", "object", "the worker pods' affinity rules"),
    ObjectField("env", "env", "array", "extra environment for the handler (EnvVar objects)"),
    ObjectField("volumes", "volumes", "array", "extra volumes for the handler's configuration"),
    ObjectField("volumeMounts", "volume_mounts", "array", "where the extra volumes are mounted"),
)
#: the same for spec.pods
POD_DEFAULTS: dict[str, Any] = {f.attr: f.default for f in POD_FIELDS if isinstance(f, Field)}


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """Where the operator reads the Redis URL from: a key of a Secret."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class PodsSpec:
    """spec.pods: the pool runs in worker pods, each a master keeping its own workers."""

    min_pods: int = POD_DEFAULTS["min_pods"]
    max_pods: int = POD_DEFAULTS["max_pods"]
    stabilization_s: float = POD_DEFAULTS["stabilization_s"]
    cooldown_s: float = POD_DEFAULTS["cooldown_s"]
    image: str | None = None
    service_account_name: str | None = None
    # Kubernetes objects passed through to the pod template (compared, never hashed)
    resources: dict[str, Any] | None = field(default=None, hash=False)
    node_selector: dict[str, str] | None = field(default=None, hash=False)
    tolerations: list[dict[str, Any]] | None = field(default=None, hash=False)
    affinity: dict[str, Any] | None = field(default=None, hash=False)
    env: list[dict[str, Any]] | None = field(default=None, hash=False)
    volumes: list[dict[str, Any]] | None = field(default=None, hash=False)
    volume_mounts: list[dict[str, Any]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.min_pods > self.max_pods:
            raise SpecError("spec.pods.min", self.min_pods,
                            f"must not exceed spec.pods.max ({self.max_pods})")


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A validated WorkerPool: what the master needs to run one pool."""

    name: str
    handler: str
    queue: str
    error_handler: str | None = None
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    redis_url_from: SecretKeyRef | None = None
    min_workers: int = DEFAULTS["min_workers"]
    max_workers: int = DEFAULTS["max_workers"]
    idle_timeout_s: float = DEFAULTS["idle_timeout_s"]
    max_retries: int = DEFAULTS["max_retries"]
    task_timeout_s: float = DEFAULTS["task_timeout_s"]
    retry_delay_s: float = DEFAULTS["retry_delay_s"]
    retry_delay_max_s: float = DEFAULTS["retry_delay_max_s"]
    result_ttl_s: int = DEFAULTS["result_ttl_s"]
    max_tasks_per_worker: int = DEFAULTS["max_tasks_per_worker"]
    max_memory_mib: int = DEFAULTS["max_memory_mib"]
    scale_up_backlog: int = DEFAULTS["scale_up_backlog"]
    prefetch: int = DEFAULTS["prefetch"]
    shutdown_grace_s: float = DEFAULTS["shutdown_grace_s"]
    pods: PodsSpec | None = None  # None: the pool runs inside the operator's pod (or locally)

    def __post_init__(self) -> None:
        """The checks across fields hold for a spec built in code too, not only a parsed one."""
        if self.min_workers > self.max_workers:
            raise SpecError("spec.minWorkers", self.min_workers,
                            f"must not exceed spec.maxWorkers ({self.max_workers})")
        if self.retry_delay_s > self.retry_delay_max_s:
            raise SpecError("spec.retryDelaySeconds", self.retry_delay_s,
                            f"must not exceed spec.retryDelayMaxSeconds ({self.retry_delay_max_s})")

    def retry_delay(self, attempt: int, jitter: float) -> float:
        """Seconds before retry number `attempt` (1-based); `jitter` in [0, 1)."""
        base = self.retry_delay_s * float(2 ** min(attempt - 1, 60))
        return min(self.retry_delay_max_s, base) * (0.5 + 0.5 * jitter)


def parse_manifest(doc: Any, where: str = "") -> PoolSpec:
    """Validate one WorkerPool document (a dict from YAML) and return its PoolSpec."""
    prefix = f"{where}: " if where else ""
    try:
        return _parse(doc)
    except SpecError as e:
        if prefix:
            raise SpecError(prefix + e.field, e.value, e.allowed) from None
        raise


def _parse(doc: Any) -> PoolSpec:
    if not isinstance(doc, Mapping):
        raise SpecError("(document)", short(doc), "a WorkerPool manifest must be a mapping")
    no_unknown(doc, ("apiVersion", "kind", "metadata", "spec", "status"), "")
    if doc.get("apiVersion") != API_VERSION:
        raise SpecError("apiVersion", doc.get("apiVersion"), f"must be {API_VERSION!r}")
    if doc.get("kind") != KIND:
        raise SpecError("kind", doc.get("kind"), f"must be {KIND!r}")
    name = _metadata_name(doc.get("metadata"))
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError("spec", short(spec), "a mapping with at least spec.handler")
    return parse_spec(name, spec)


def _metadata_name(meta: Any) -> str:
    if not isinstance(meta, Mapping) or "name" not in meta:
        raise SpecError("metadata.name", None, "required")
    name = meta["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError("metadata.name", name, "a DNS-1123 name: lower-case letters, digits, '-' and '.'")
    return name


def parse_spec(name: str, spec: Mapping[str, Any]) -> PoolSpec:
    """Validate the `spec` mapping of a WorkerPool named `name`."""
    no_unknown(spec, (*_BY_NAME, "redis", "pods"), "spec.")
    values: dict[str, Any] = {"name": name}
    for f in FIELDS:
        raw = spec.get(f.name, f.default)
        if raw is None:
            continue
        values[f.attr] = check_scalar(f"spec.{f.name}", f, raw)
    if "handler" not in values:
        raise SpecError("spec.handler", None, "required: 'module:function', the task handler")
    for attr, fname in (("handler", "handler"), ("error_handler", "errorHandler")):
        if attr in values and not _REF.match(values[attr]):
            raise SpecError(f"spec.{fname}", values[attr], "a 'module:function' reference")
    values.setdefault("queue", name)
    if not _QUEUE.match(values["queue"]) or len(values["queue"]) > QUEUE_MAX_LENGTH:
        raise SpecError("spec.queue", values["queue"], "1 to 200 characters without spaces")
    values.update(_parse_redis(spec.get("redis")))
    if spec.get("pods") is not None:
        values["pods"] = _parse_pods(spec["pods"])
    return PoolSpec(**values)  # its __post_init__ checks the fields against each other


def _parse_redis(redis: Any) -> dict[str, Any]:
    if redis is None:
        return {}
    if not isinstance(redis, Mapping):
        raise SpecError("spec.redis", short(redis), "a mapping with url or urlFrom")
    no_unknown(redis, _REDIS_FIELDS, "spec.redis.")
    if "url" in redis and "urlFrom" in redis:
        raise SpecError("spec.redis", "url and urlFrom", "give one of url or urlFrom, not both")
    out: dict[str, Any] = {}
    if "url" in redis:
        out["redis_url"] = _check_redis_url("spec.redis.url", redis["url"])
    if "urlFrom" in redis:
        out["redis_url_from"] = _secret_ref(redis["urlFrom"])
    return out


def _parse_pods(pods: Any) -> PodsSpec:
    if not isinstance(pods, Mapping):
        raise SpecError("spec.pods", short(pods), "a mapping such as {min: 1, max: 10}")
    no_unknown(pods, tuple(f.name for f in POD_FIELDS), "spec.pods.")
    values: dict[str, Any] = {}
    for f in POD_FIELDS:
        raw = pods.get(f.name, f.default if isinstance(f, Field) else None)
        if raw is None:
            continue
        path = f"spec.pods.{f.name}"
        checked = check_object(path, f, raw) if isinstance(f, ObjectField) else check_scalar(path, f, raw)
        values[f.attr] = checked
    return PodsSpec(**values)


def _secret_ref(raw: Any) -> SecretKeyRef:
    path = "spec.redis.urlFrom"
    if not isinstance(raw, Mapping):
        raise SpecError(path, short(raw), "a mapping with secretKeyRef")
    no_unknown(raw, ("secretKeyRef",), path + ".")
    ref = raw.get("secretKeyRef")
    if not isinstance(ref, Mapping):
        raise SpecError(path + ".secretKeyRef", short(ref), "a mapping with name and key")
    no_unknown(ref, ("name", "key"), path + ".secretKeyRef.")
    for k in ("name", "key"):
        if not isinstance(ref.get(k), str) or not ref.get(k):
            raise SpecError(f"{path}.secretKeyRef.{k}", ref.get(k), "a non-empty string")
    return SecretKeyRef(name=ref["name"], key=ref["key"])


def _check_redis_url(path: str, url: Any) -> str:
    """A server, Sentinel or Cluster URL (connection.py has the forms); SpecError if not."""
    parse_redis_url(path, url)
    return cast(str, url)


def redact_url(url: str) -> str:
    """The URL with every password replaced by '***', safe for logs and status."""
    return redact(url)


def manifest_of(spec: PoolSpec) -> dict[str, Any]:
    """The manifest a master reads (`parse_manifest` of it gives `spec` back): every field of
    FIELDS, but not the Redis URL (a secret: it goes in the master's environment) nor spec.pods
    (the operator's concern, not the master's)."""
    body: dict[str, Any] = {f.name: getattr(spec, f.attr) for f in FIELDS
                            if getattr(spec, f.attr) is not None}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": spec.name}, "spec": body}


def openapi_schema() -> dict[str, Any]:
    """The CRD's `spec` schema, generated from FIELDS (deploy/crd.yaml is tested against it)."""
    pods = {"type": "object", "description": "run the pool in worker pods the operator scales",
            "properties": schema_of(POD_FIELDS)}
    return {"type": "object", "required": ["handler"], "properties": {**schema_of(FIELDS), "pods": pods}}
