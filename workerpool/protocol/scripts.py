"""The Lua scripts, each with its KEYS/ARGV contract, and the ACK_CLAIM argument layout.

A worker records each finished task as one outcome (Ok, Retry or Dead); ack_claim_args lays a
batch of them out for ACK_CLAIM, which records them all in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .keys import Keys

# Record the outcomes of finished tasks, give back or claim unstarted ones: one round trip.
# KEYS: queue, processing, stats, delayed, dead, then one result key per outcome (in order)
# ARGV: n_claim, result_ttl_ms, release, n_back, then n_back items to give back (unstarted, in
#   the order they were claimed), then 5 per outcome: op, item, id, x, y (ack_claim_args)
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


# The outcomes of served tasks, one per task until its batch is acknowledged. NamedTuples, not
# frozen dataclasses: built at ~25k tasks/s per worker, a frozen dataclass's __init__ (one
# object.__setattr__ per field) cost ~2 % of the no-op drain and ~0.15 MiB more private memory
# per worker after 20k tasks (bench noop, 2026-11-27). `op` is the script's name for the kind.
class Ok(NamedTuple):
    """The handler returned: `result` is the result element's JSON ('' = do not store it)."""

    item: bytes  # the exact element, to remove from the processing list
    task_id: str  # '' for a foreign task (no result key)
    result: str
    op: str = "ok"


class Retry(NamedTuple):
    """The attempt failed and retries remain: `new_item` waits in Keys.delayed until `due_ms`."""

    item: bytes
    task_id: str
    due_ms: int
    new_item: bytes
    op: str = "retry"


class Dead(NamedTuple):
    """The last attempt failed: `entry` (DeadLetter JSON) goes to Keys.dead, `result` (a dead
    Result's JSON, '' = do not store) to the producer's result key."""

    item: bytes
    task_id: str
    entry: str
    result: str
    op: str = "dead"


Outcome = Ok | Retry | Dead


def ack_claim_args(keys: Keys, processing: str, outcomes: Sequence[Outcome], *, n_claim: int,
                   result_ttl_ms: int, release: bool,
                   back: Sequence[bytes]) -> tuple[list[str], list[object]]:
    """(KEYS, ARGV) for ACK_CLAIM: record `outcomes`, give `back` back, claim up to `n_claim`.

    `processing` is the worker's Keys.processing list; `release` hands every task it still
    holds back to the queue (the worker is stopping).
    """
    args: list[object] = [n_claim, result_ttl_ms, 1 if release else 0, len(back), *back]
    script_keys = [keys.queue, processing, keys.stats, keys.delayed, keys.dead]
    for out in outcomes:
        match out:
            case Ok():
                args += ("ok", out.item, out.task_id, out.result, "")
            case Retry():
                args += ("retry", out.item, out.task_id, out.due_ms, out.new_item)
            case Dead():
                args += ("dead", out.item, out.task_id, out.entry, out.result)
        script_keys.append(keys.result(out.task_id))  # declared for Cluster; unused if no id
    return script_keys, args


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
