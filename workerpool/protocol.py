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
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key of one queue. All but the queue itself live under '<queue>:wp:'."""

    queue: str

    def _k(self, suffix: str) -> str:
        return f"{self.queue}:wp:{suffix}"

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
    """Compact JSON; raises PayloadError naming the problem for values JSON cannot hold."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise PayloadError(f"not JSON-serialisable: {e}") from None


def envelope(task_id: str, payload_json: str, attempts: int = 0, enqueued_at_ms: int = 0) -> str:
    """Our task envelope; the field order is part of the protocol (see ENVELOPE_PREFIX)."""
    return (f'{ENVELOPE_PREFIX}{attempts},"id":"{task_id}",'
            f'"enqueued_at":{enqueued_at_ms},"payload":{payload_json}}}')


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


class BadItem(Exception):
    """A queue element that can never be served (not UTF-8); it goes to the dead letters."""


def decode_item(item: bytes) -> Task:
    """Decode a queue element: our envelope, or a foreign producer's JSON or plain text."""
    try:
        text = item.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadItem(f"not valid UTF-8 at byte {e.start}") from None
    if text.startswith(ENVELOPE_PREFIX):
        env = json.loads(text)
        if "raw" in env:
            return Task(item, env["id"], env["attempts"], _foreign(env["raw"]), env["raw"])
        return Task(item, env["id"], env["attempts"], env["payload"])
    return Task(item, None, 0, _foreign(text), text)


def _foreign(text: str) -> Any:
    """A foreign producer's element: its JSON value if it is JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def retry_item(task: Task, attempts: int) -> str:
    """The element to re-enqueue for another attempt."""
    task_id = task.task_id or new_task_id()
    if task.foreign_text is not None:
        return raw_envelope(task_id, task.foreign_text, attempts)
    return envelope(task_id, dumps(task.payload), attempts, now_ms())


def reset_attempts(item: bytes) -> bytes:
    """The element with its attempt count set to 0 (dead letters sent back to the queue)."""
    prefix = ENVELOPE_PREFIX.encode()
    if not item.startswith(prefix):
        return item
    rest = item[len(prefix):]
    return prefix + b"0" + rest[rest.index(b","):]


# --- Lua scripts -------------------------------------------------------------------------

# Record the outcomes of finished tasks, give back or claim unstarted ones: one round trip.
# KEYS: queue, processing, stats, delayed, dead
# ARGV: n_claim, result_prefix, result_ttl_ms, release, n_back, then n_back items to give back
#   (unstarted, in the order they were claimed), then 5 per outcome: op, item, id, x, y
#   ok:    x = result JSON ('' = do not store)
#   retry: x = due ms, y = the new element
#   dead:  x = dead-letter JSON, y = result JSON for the producer ('' = do not store)
# release = 1: the worker is stopping; its unstarted tasks go back to the queue head.
# Returns {backlog, claimed items...}.
ACK_CLAIM = """
local q, proc, stats, delayed, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local n_claim, prefix, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local n_back = tonumber(ARGV[5])
local ok, retried, died = 0, 0, 0
local function store(id, data)
  if id ~= '' and data ~= '' and ttl > 0 then
    local key = prefix .. id
    redis.call('DEL', key)
    redis.call('RPUSH', key, data)
    redis.call('PEXPIRE', key, ttl)
  end
end
for i = 6 + n_back, #ARGV, 5 do
  local op, item, id, x, y = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  redis.call('LREM', proc, 1, item)
  if op == 'ok' then
    ok = ok + 1
    store(id, x)
  elseif op == 'retry' then
    retried = retried + 1
    redis.call('ZADD', delayed, tonumber(x), y)
  else
    died = died + 1
    redis.call('RPUSH', dead, x)
    store(id, y)
  end
end
if ok > 0 then redis.call('HINCRBY', stats, 'processed', ok) end
if retried > 0 then redis.call('HINCRBY', stats, 'retried', retried) end
if retried + died > 0 then redis.call('HINCRBY', stats, 'failed', retried + died) end
if died > 0 then redis.call('HINCRBY', stats, 'dead', died) end
if ARGV[4] == '1' then
  while redis.call('LMOVE', proc, q, 'RIGHT', 'LEFT') do end
  return {redis.call('LLEN', q)}
end
-- given back last to first, so they keep their order at the queue head; an item no longer in
-- the processing list (a retried call whose first run went through) is not pushed twice
for i = 5 + n_back, 6, -1 do
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
# KEYS: processing, queue, seq. ARGV: charged index, envelope prefix. Returns the count.
RECOVER = """
local proc, q, seq = KEYS[1], KEYS[2], KEYS[3]
local charged, prefix = tonumber(ARGV[1]), ARGV[2]
local items = redis.call('LRANGE', proc, 0, -1)
for i = #items, 1, -1 do
  local item = items[i]
  if i - 1 == charged then
    if string.sub(item, 1, #prefix) == prefix then
      local n, rest = string.match(string.sub(item, #prefix + 1), '^(%d+)(,.*)$')
      item = prefix .. (tonumber(n) + 1) .. rest
    else
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
# KEYS: delayed, queue. ARGV: now ms, limit. Returns the count.
PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, item in ipairs(due) do
  redis.call('RPUSH', KEYS[2], item)
  redis.call('ZREM', KEYS[1], item)
end
return #due
"""
