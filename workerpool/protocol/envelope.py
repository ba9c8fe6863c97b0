"""The Redis protocol: key names, the task envelope and the Lua scripts, in one place.

Producers RPUSH onto the queue list; a worker moves tasks into its own processing list
(BLMOVE when idle, or a batch inside ACK_CLAIM when busy), so Redis always knows which worker
holds which task. A task leaves its processing list only when ACK_CLAIM records its outcome
(result stored, retry scheduled, or dead-lettered), or when RECOVER puts it back on the queue
after its worker died.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from .errors import PayloadError

# Our envelope starts with this exact text, so Lua can read and rewrite the attempt count
# without decoding (and possibly altering) the payload: cjson rounds big numbers.
ENVELOPE_PREFIX = '{"__wp__":1,"attempts":'
# How often a master refreshes its own and its workers' entries in Keys.alive.
HEARTBEAT_INTERVAL_S = 1.0
# A worker or master whose entry is older than this is dead; its processing lists are recovered.
HEARTBEAT_TTL_S = 5.0
# A worker acknowledges finished tasks at least this often, even in the middle of a batch.
ACK_FLUSH_INTERVAL_S = 0.05
# A busy worker holds about this much unstarted work (its recent task durations times the tasks
# it holds), never more than `prefetch` tasks: short tasks come in batches (few round trips),
# while 50 ms tasks come one at a time, so a burst is not hoarded by the workers that exist
# first and the temporaries forked a moment later find it still in the queue.
BATCH_WORK_S = 0.005
# Tasks moved from the delayed set (retries) to the queue per master tick, at most.
PROMOTE_BATCH = 500
# An envelope's attempt count is below this (9 digits: Lua's tonumber stays exact).
MAX_ATTEMPTS_FIELD = 10**9
# Redis refuses a longer string (proto-max-bulk-len's default). A result this big could never
# be recorded: its worker would retry the write forever, so dumps() refuses it up front.
MAX_VALUE_BYTES = 512 * 1024 * 1024


def hash_tag(key: str) -> str | None:
    """The part of `key` Redis Cluster hashes when it is not the whole key: the text between
    the first '{' and the first '}' after it, if not empty (else None: the whole key counts)."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1:end] if end > start + 1 else None


def key_prefix(queue: str) -> str:
    """Where a queue's internal keys live: '{Q}:wp:', in the slot of the plain list 'Q'.

    A foreign producer RPUSHes to the plain key 'Q'; '{Q}' hashes as 'Q' does, so on Redis
    Cluster every key of the queue shares one slot (BLMOVE and the scripts need that). A name
    that has a hash tag already keeps 'Q:wp:', which shares it. A name with a '}' and no hash
    tag cannot be put in its own slot this way (the Cluster would cut the tag at that '}'):
    it works on one server and on Sentinel, not on Cluster. A queue named exactly '{Q}' shares
    the internal keys of the queue 'Q': do not use both names.
    """
    return f"{queue}:wp:" if hash_tag(queue) is not None else f"{{{queue}}}:wp:"


def queue_of(masters_key: str) -> str | None:
    """The queue whose Keys.masters is `masters_key` (for discovery by SCAN), or None."""
    if not masters_key.endswith(":wp:masters"):
        return None
    stem = masters_key[:-len(":wp:masters")]
    if stem.startswith("{") and stem.endswith("}") and key_prefix(stem[1:-1]) == stem + ":wp:":
        return stem[1:-1]  # (a queue named '{Q}' itself would read as 'Q': see key_prefix)
    if hash_tag(stem) is not None:
        return stem
    return None


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key of one queue. All but the queue itself live under key_prefix(queue)."""

    queue: str

    def _k(self, suffix: str) -> str:
        return key_prefix(self.queue) + suffix

    @property
    def stats(self) -> str:
        """Hash of counters: processed, failed, retried, dead."""
        return self._k("stats")

    @property
    def delayed(self) -> str:
        """Sorted set of retries waiting for their backoff; score = due time in ms."""
        return self._k("delayed")

    @property
    def dead(self) -> str:
        """List of dead letters: JSON objects with id, attempts, error, traceback, item."""
        return self._k("dead")

    @property
    def alive(self) -> str:
        """Sorted set 'm:<master>' / 'w:<worker>' -> heartbeat deadline in ms."""
        return self._k("alive")

    @property
    def masters(self) -> str:
        """Hash master id -> JSON of the numbers that master publishes."""
        return self._k("masters")

    @property
    def seq(self) -> str:
        """Counter for ids of foreign tasks that RECOVER wraps in an envelope."""
        return self._k("seq")

    @property
    def result_prefix(self) -> str:
        """Results are one-element lists '<prefix><task id>' (so a reader can block on them)."""
        return self._k("result:")

    def result(self, task_id: str) -> str:
        return self.result_prefix + task_id

    def processing(self, worker_id: str) -> str:
        """The list of tasks that one worker holds."""
        return self._k("processing:" + worker_id)


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
        if size > MAX_VALUE_BYTES:
            raise PayloadError(f"{size} bytes of JSON: more than Redis stores in one value "
                               f"({MAX_VALUE_BYTES} bytes)")
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


# --- results and dead letters (read by Queue, by the CLI and by readers in other languages) -

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


# --- Lua scripts -------------------------------------------------------------------------

# Record the outcomes of finished tasks, give back or claim unstarted ones: one round trip.
# KEYS: queue, processing, stats, delayed, dead, then one result key per outcome (in order)
# ARGV: n_claim, result_ttl_ms, release, n_back, then n_back items to give back (unstarted, in
#   the order they were claimed), then 5 per outcome: op, item, id, x, y
#   ok:    x = result JSON ('' = do not store)
#   retry: x = due ms, y = the new element
#   dead:  x = dead-letter JSON, y = result JSON for the producer ('' = do not store)
# release = 1: the worker is stopping; its unstarted tasks go back to the queue head.
# Returns {backlog, claimed items...}.
ACK_CLAIM = """
local q, proc, stats, delayed, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local n_claim, ttl, n_back = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local first = 5 + n_back  -- where the outcomes start
local ok, retried, died = 0, 0, 0
-- every key a script touches is declared (Redis Cluster, ACLs): the client passes the result
-- key of the outcome that starts at ARGV[i] as KEYS[6 + (i - first) / 5]
local function store(i, id, data)
  if id ~= '' and data ~= '' and ttl > 0 then
    local key = KEYS[6 + (i - first) / 5]
    redis.call('DEL', key)
    redis.call('RPUSH', key, data)
    redis.call('PEXPIRE', key, ttl)
  end
end
for i = first, #ARGV, 5 do
  local op, item, id, x, y = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  redis.call('LREM', proc, 1, item)
  if op == 'ok' then
    ok = ok + 1
    store(i, id, x)
  elseif op == 'retry' then
    retried = retried + 1
    redis.call('ZADD', delayed, tonumber(x), y)
  else
    died = died + 1
    redis.call('RPUSH', dead, x)
    store(i, id, y)
  end
end
if ok > 0 then redis.call('HINCRBY', stats, 'processed', ok) end
if retried > 0 then redis.call('HINCRBY', stats, 'retried', retried) end
if retried + died > 0 then redis.call('HINCRBY', stats, 'failed', retried + died) end
if died > 0 then redis.call('HINCRBY', stats, 'dead', died) end
if ARGV[3] == '1' then
  while redis.call('LMOVE', proc, q, 'RIGHT', 'LEFT') do end
  return {redis.call('LLEN', q)}
end
-- given back last to first, so they keep their order at the queue head; an item no longer in
-- the processing list (a retried call whose first run went through) is not pushed twice
for i = 4 + n_back, 5, -1 do
  if redis.call('LREM', proc, -1, ARGV[i]) > 0 then redis.call('LPUSH', q, ARGV[i]) end
end
local out = {0}
if n_claim > 0 then
  -- claim a batch only from a deep backlog, so a slow task does not hoard a shallow one
  local n = math.min(n_claim, math.max(1, math.floor(redis.call('LLEN', q) / 8)))
  for _ = 1, n do
    local item = redis.call('LMOVE', q, proc, 'LEFT', 'RIGHT')
    if not item then break end
    out[#out + 1] = item
  end
end
out[1] = redis.call('LLEN', q)
return out
"""

# Put a dead or vanished worker's tasks back at the queue head, in their order.
# The task at index ARGV[1] (0-based; -1 = none) was running: it is charged one attempt, so a
# task that kills its worker every time ends in the dead letters instead of a crash loop.
# Never fails on what a producer pushed: anything that is not our envelope is wrapped as raw.
# KEYS: processing, queue, seq. ARGV: charged index, envelope prefix. Returns the count.
RECOVER = """
local proc, q, seq = KEYS[1], KEYS[2], KEYS[3]
local charged, prefix = tonumber(ARGV[1]), ARGV[2]
local items = redis.call('LRANGE', proc, 0, -1)
for i = #items, 1, -1 do
  local item = items[i]
  if i - 1 == charged then
    local n, rest = nil, nil
    if string.sub(item, 1, #prefix) == prefix then
      n, rest = string.match(string.sub(item, #prefix + 1), '^(%d+)(,.*)$')
    end
    if n and #n <= 9 then
      item = prefix .. (tonumber(n) + 1) .. rest
    else
      -- foreign text, or text that only imitates our envelope: wrap it, keeping it as text
      local id = 'r' .. redis.call('INCR', seq)
      item = prefix .. '1,"id":"' .. id .. '","raw":' .. cjson.encode(item) .. '}'
    end
  end
  redis.call('LPUSH', q, item)
end
redis.call('DEL', proc)
return #items
"""

# Move retries whose backoff has passed from the delayed set to the queue tail.
# KEYS: delayed, queue. ARGV: now ms, limit. Returns the backlog (the queue's length) after:
# the master's poll is this one call (redis-py's Cluster client refuses scripts in a pipeline).
PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, item in ipairs(due) do
  redis.call('RPUSH', KEYS[2], item)
  redis.call('ZREM', KEYS[1], item)
end
return redis.call('LLEN', KEYS[2])
"""
