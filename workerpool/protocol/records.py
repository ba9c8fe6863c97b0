"""The JSON records on the wire besides the envelope: a task's result element, a dead-letter
entry and the numbers each master publishes. Each is a frozen dataclass that writes itself
(to_json) and reads itself back (from_json), for Queue, the CLI, `top`, the operator and
readers in other languages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import PayloadError
from .envelope import dumps


@dataclass(frozen=True, slots=True)
class Result:
    """The element of a result list: {"status":"ok","value":...} or
    {"status":"dead","error":"...","attempts":n}."""

    status: Literal["ok", "dead"]
    value: Any = None
    error: str = ""
    attempts: int = 0

    def to_json(self) -> str:
        if self.status == "ok":
            return dumps({"status": "ok", "value": self.value})
        return dumps({"status": "dead", "error": self.error, "attempts": self.attempts})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Result:
        """Decode a result element; PayloadError if it is not one (written there by hand)."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or data.get("status") not in ("ok", "dead"):
            raise PayloadError(f"not a workerpool result element: {raw[:80]!r}")
        if data.get("status") == "dead":
            return cls("dead", error=str(data.get("error", "?")), attempts=int(data.get("attempts", 0)))
        return cls("ok", value=data.get("value"))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of the dead-letter list, as JSON: id (null for a foreign task), queue,
    attempts, error, traceback, failed_at (Unix seconds) and the element byte for byte:
    "item" (its UTF-8 text) or, for an element that is not UTF-8, "item_latin1" (each byte
    as the code point of the same value)."""

    id: str | None
    queue: str
    attempts: int
    error: str
    traceback: str
    failed_at: float
    item: bytes

    def to_json(self) -> str:
        return dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.id, "queue": self.queue, "attempts": self.attempts,
                                 "error": self.error, "traceback": self.traceback,
                                 "failed_at": self.failed_at}
        try:
            entry["item"] = self.item.decode("utf-8")
        except UnicodeDecodeError:
            entry["item_latin1"] = self.item.decode("latin-1")  # byte for byte, for `dead requeue`
        return entry

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        """Decode an entry; one that is not ours (pushed there by hand) is kept as its item."""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            data = json.loads(raw)
            if "item_latin1" in data:
                item = str(data["item_latin1"]).encode("latin-1")
            else:
                item = str(data["item"]).encode("utf-8", "surrogatepass")
            return cls(data.get("id"), str(data.get("queue", "")), int(data.get("attempts", 0)),
                       str(data.get("error", "")), str(data.get("traceback", "")),
                       float(data.get("failed_at", 0)), item)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return cls(None, "", 0, "not a workerpool dead-letter entry", "", 0.0, raw)


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """One worker in its master's MasterReport."""

    pid: int
    role: str  # a process.Role value: "permanent" or "temporary"
    busy: bool
    task_s: float | None = None  # the current task's age (None when idle)

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "role": self.role, "busy": self.busy, "task_s": self.task_s}

    @classmethod
    def from_dict(cls, data: Any) -> WorkerReport:
        """PayloadError if `data` is not a worker's entry (see MasterReport.from_json)."""
        _check_object(data, "a worker's entry")
        return cls(_field(data, "pid", _INT), _field(data, "role", _STR, ""),
                   _field(data, "busy", _BOOL, False), _number(data, "task_s", None))


@dataclass(frozen=True, slots=True)
class MasterReport:
    """The numbers a master publishes in Keys.masters each heartbeat, read by `workerpool
    stats`, `top` and the operator. Its JSON keys are the field names, but for `master`
    (master_id) and `min`/`max` (min_workers/max_workers).

    from_json reads an entry from another version of workerpool (or one written by hand)
    field by field: an unknown field is ignored, a missing one other than master, host and pid
    takes its default, a field of the wrong type is a PayloadError.
    """

    master_id: str
    pool: str
    host: str
    pid: int
    min_workers: int = 0
    max_workers: int = 0
    permanent: int = 0
    temporary: int = 0
    busy: int = 0
    workers: tuple[WorkerReport, ...] = ()
    crashes: int = 0  # workers that died abnormally since the master started
    last_crash: str = ""  # the last abnormal exit, as a sentence ('' = none yet)
    updated_at: float = 0.0  # Unix seconds

    def to_dict(self) -> dict[str, Any]:
        return {"master": self.master_id, "pool": self.pool, "host": self.host, "pid": self.pid,
                "min": self.min_workers, "max": self.max_workers, "permanent": self.permanent,
                "temporary": self.temporary, "busy": self.busy,
                "workers": [w.to_dict() for w in self.workers], "crashes": self.crashes,
                "last_crash": self.last_crash, "updated_at": self.updated_at}

    def to_json(self) -> str:
        """json.dumps with its default separators: the bytes masters have always published."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> MasterReport:
        """Decode a published entry; PayloadError (naming the problem) if it is not one."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise PayloadError(f"a master's numbers are not JSON ({e}): {raw[:80]!r}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> MasterReport:
        _check_object(data, "a master's numbers")
        workers = _field(data, "workers", (list,), [])
        return cls(_field(data, "master", _STR), _field(data, "pool", _STR, ""),
                   _field(data, "host", _STR), _field(data, "pid", _INT),
                   _field(data, "min", _INT, 0), _field(data, "max", _INT, 0),
                   _field(data, "permanent", _INT, 0), _field(data, "temporary", _INT, 0),
                   _field(data, "busy", _INT, 0), tuple(map(WorkerReport.from_dict, workers)),
                   _field(data, "crashes", _INT, 0),
                   _field(data, "last_crash", (str, type(None)), "") or "",
                   _number(data, "updated_at", 0.0))


# the JSON types a field may have; exact types: True is not a count, nor 1 a flag
_INT: tuple[type, ...] = (int,)
_STR: tuple[type, ...] = (str,)
_BOOL: tuple[type, ...] = (bool,)
_REQUIRED: Any = object()


def _check_object(data: Any, what: str) -> None:
    if not isinstance(data, dict):
        raise PayloadError(f"{what} is {_shown(data)}, not a JSON object")


def _field(data: dict[str, Any], name: str, types: tuple[type, ...], default: Any = _REQUIRED) -> Any:
    """data[name] if its type is one of `types`; `default` if absent; else PayloadError."""
    if name not in data:
        if default is _REQUIRED:
            raise PayloadError(f"a master's numbers lack {name!r}")
        return default
    value = data[name]
    if type(value) not in types:
        raise PayloadError(f"a master's numbers have {name}={_shown(value)}, which is not "
                           f"{' or '.join(t.__name__ for t in types)}")
    return value


def _number(data: dict[str, Any], name: str, default: float | None) -> Any:
    """A number field as a float (PayloadError for an integer too big for one); null = default."""
    value = _field(data, name, (int, float, type(None)), default)
    try:
        return default if value is None else float(value)
    except OverflowError:
        raise PayloadError(f"a master's numbers have a {name} too big for a float") from None


def _shown(value: Any) -> str:
    """The start of a value's repr, for an error message (a hostile one may nest deep)."""
    try:
        return repr(value)[:80]
    except RecursionError:
        return f"a {type(value).__name__} nested too deep"
