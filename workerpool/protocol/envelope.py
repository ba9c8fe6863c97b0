"""The task envelope: how a task is written on the queue, and how any element is read back.

Our producers wrap each payload in an envelope that starts with ENVELOPE_PREFIX, so the Lua
scripts can rewrite its attempt count without decoding the payload; an element a foreign
producer pushed is served as it is (JSON or plain text).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .. import protocol as package
from ..errors import PayloadError

# Our envelope starts with this exact text, so Lua can read and rewrite the attempt count
# without decoding (and possibly altering) the payload: cjson rounds big numbers.
ENVELOPE_PREFIX = '{"__wp__":1,"attempts":'
# An envelope's attempt count is below this (9 digits: Lua's tonumber stays exact).
MAX_ATTEMPTS_FIELD = 10**9
# Redis refuses a longer string (proto-max-bulk-len's default). A result this big could never
# be recorded: its worker would retry the write forever, so dumps() refuses it up front.
MAX_VALUE_BYTES = 512 * 1024 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


def new_task_id() -> str:
    return uuid.uuid4().hex


def dumps(value: Any) -> str:
    """Compact JSON; raises PayloadError naming the problem for values JSON cannot hold.

    Non-ASCII text stays as it is, unless it holds a lone surrogate (a str that is not
    Unicode, e.g. from a surrogateescape'd file name): that is written as a \\udcxx escape,
    which every JSON reader accepts, instead of failing later in the Redis client's encoder.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        try:
            size = len(text) if text.isascii() else len(text.encode("utf-8"))  # isascii: O(1)
        except UnicodeEncodeError:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
            size = len(text)  # ASCII now
        limit = package.MAX_VALUE_BYTES  # the package's: one place to lower it (tests do)
        if size > limit:
            raise PayloadError(f"{size} bytes of JSON: more than Redis stores in one value "
                               f"({limit} bytes)")
        return text
    except (TypeError, ValueError) as e:
        raise PayloadError(f"not JSON-serialisable: {e}") from None
    except RecursionError:
        raise PayloadError("not JSON-serialisable: nested too deep (or contains itself)") from None


def envelope(task_id: str, payload_json: str, attempts: int = 0, enqueued_at_ms: int = 0,
             traceparent: str | None = None) -> str:
    """Our task envelope; the field order is part of the protocol (see ENVELOPE_PREFIX).

    `traceparent` (W3C, checked by the producer: hex and dashes only) is there only if given.
    """
    trace = f'"traceparent":"{traceparent}",' if traceparent else ""
    return (f'{ENVELOPE_PREFIX}{attempts},"id":"{task_id}",'
            f'"enqueued_at":{enqueued_at_ms},{trace}"payload":{payload_json}}}')


def raw_envelope(task_id: str, raw: str, attempts: int) -> str:
    """An envelope around a foreign task's original text (kept as text, decoded on each run)."""
    return f'{ENVELOPE_PREFIX}{attempts},"id":"{task_id}","raw":{dumps(raw)}}}'


@dataclass(frozen=True, slots=True)
class Task:
    """One task as a worker sees it."""

    item: bytes  # the exact list element, to acknowledge it
    task_id: str | None  # None for a foreign task that never needed an envelope
    attempts: int  # failed attempts so far
    payload: Any
    foreign_text: str | None = None  # the original text of a foreign task
    enqueued_at_ms: int = 0  # when our producer enqueued it (0 = unknown: a foreign task)
    traceparent: str | None = None  # the producer's W3C trace context, if it passed one


class BadItem(Exception):
    """A queue element that can never be served; it goes to the dead letters with the reason."""


def decode_item(item: bytes) -> Task:
    """Decode a queue element: our envelope, or a foreign producer's JSON or plain text.

    Raises BadItem (never anything else) for an element that cannot be served: not UTF-8,
    JSON nested deeper than Python decodes, or text that starts like our envelope but is not
    one (it would otherwise be served with an attempt count nobody maintains).
    """
    try:
        text = item.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadItem(f"not valid UTF-8 at byte {e.start}") from None
    if text.startswith(ENVELOPE_PREFIX):
        return _decode_envelope(item, text)
    return Task(item, None, 0, _foreign(text), text)


def _decode_envelope(item: bytes, text: str) -> Task:
    try:
        env = _strict_json(text)
    except ValueError as e:
        raise BadItem(f"starts like a workerpool envelope but is not strict JSON ({e})") from None
    problem = _envelope_problem(env, text)
    if problem:
        raise BadItem(f"starts like a workerpool envelope but {problem}")
    if "raw" in env:
        return Task(item, env["id"], env["attempts"], _foreign(env["raw"]), env["raw"])
    # producers we do not know may put anything in these two: use them only if well-formed
    enqueued_at, trace = env.get("enqueued_at"), env.get("traceparent")
    return Task(item, env["id"], env["attempts"], env["payload"],
                enqueued_at_ms=enqueued_at if type(enqueued_at) is int else 0,
                traceparent=trace if isinstance(trace, str) else None)


def _envelope_problem(env: Any, text: str) -> str:
    """What makes a decoded envelope unusable, or ''."""
    if not isinstance(env, dict):
        return "is not a JSON object"
    attempts = env.get("attempts")
    if type(attempts) is not int or not 0 <= attempts < MAX_ATTEMPTS_FIELD:
        return f"its attempts is {attempts!r}, not an integer from 0 to {MAX_ATTEMPTS_FIELD - 1}"
    # the count Lua reads (first after the prefix) must be the one Python reads (a duplicate
    # "attempts" key would let a task that kills its worker escape the dead letters)
    if not text.startswith(f"{attempts},", len(ENVELOPE_PREFIX)):  # (no copy of the payload)
        return "its attempts count is not the first field after the prefix"
    if not isinstance(env.get("id"), str) or not env["id"]:
        return f"its id is {env.get('id')!r}, not a non-empty string"
    if ("payload" in env) == ("raw" in env):
        return "it has neither or both of 'payload' and 'raw'"
    if "raw" in env and not isinstance(env["raw"], str):
        return "its raw is not a string"
    return ""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every call: json.loads with an option builds a new decoder each time (an
# allocation per task that showed as +0.3 MiB of worker memory over 20,000 tasks).
_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _strict_json(text: str) -> Any:
    """json.loads without NaN/Infinity (not JSON: PHP and Go refuse them); ValueError if not."""
    try:
        return _STRICT_DECODER.decode(text)
    except RecursionError:
        raise ValueError("nested deeper than Python decodes") from None


def _foreign(text: str) -> Any:
    """A foreign producer's element: its value if it is strict JSON, else the text itself."""
    try:
        return _strict_json(text)
    except ValueError as e:
        if "nested deeper" in str(e):
            raise BadItem("JSON nested deeper than Python decodes (about 1,000 levels)") from None
        return text


def with_attempts(item: bytes, attempts: int) -> bytes:
    """Our envelope with its attempt count replaced; the rest (the payload) byte for byte."""
    prefix = ENVELOPE_PREFIX.encode()
    rest = item[len(prefix):]
    return prefix + str(attempts).encode() + rest[rest.index(b","):]


def retry_item(task: Task, attempts: int) -> bytes:
    """The element to re-enqueue for another attempt: the payload as it was enqueued.

    Built from the element's text, never from the decoded payload, which the handler may
    have changed (or filled with things JSON cannot hold) before it failed.
    """
    if task.foreign_text is not None and task.task_id is None:
        return raw_envelope(new_task_id(), task.foreign_text, attempts).encode()
    return with_attempts(task.item, attempts)


def reset_attempts(item: bytes) -> bytes:
    """The element with its attempt count set to 0 (dead letters sent back to the queue)."""
    if not item.startswith(ENVELOPE_PREFIX.encode()) or b"," not in item:
        return item
    return with_attempts(item, 0)
