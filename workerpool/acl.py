"""The least-privilege Redis ACL of one queue: what a pool, its producers, the CLI and the
operator's status reader need, and nothing else (no @dangerous, no KEYS, FLUSH* or CONFIG).

Keys: the queue list and its internal keys (protocol.key_prefix). Commands: those our clients
send, plus those our Lua scripts call (Redis checks a script's calls against the user too).
"""

from __future__ import annotations

import re

from .protocol import key_prefix

# What each side sends; the scripts' calls are included with the side that runs them.
PRODUCER_COMMANDS = ("rpush", "blmove", "llen", "zcard", "zrangebyscore", "hgetall",
                     "lrange", "ltrim", "del", "multi", "exec")
WORKER_COMMANDS = ("evalsha", "script|load", "blmove", "zadd",
                   # ACK_CLAIM
                   "lrem", "lmove", "rpush", "pexpire", "del", "hincrby", "llen")
MASTER_COMMANDS = ("evalsha", "script|load", "zadd", "hset", "zrangebyscore", "zscore", "zrem",
                   "hdel", "scan",
                   # PROMOTE, RECOVER
                   "rpush", "lpush", "lrange", "incr", "llen")
# A Cluster client reads the slot map and the command table when it starts.
CLUSTER_COMMANDS = ("cluster|slots", "cluster|shards", "command")


def acl_pattern(text: str) -> str:
    """`text` as an ACL key pattern that matches only itself (glob characters escaped)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def acl_rules(queue: str, cluster: bool = False) -> str:
    """The ACL SETUSER rules (after the user name and password) for one queue."""
    commands = sorted(set(PRODUCER_COMMANDS + WORKER_COMMANDS + MASTER_COMMANDS
                          + (CLUSTER_COMMANDS if cluster else ())))
    keys = f"~{acl_pattern(queue)} ~{acl_pattern(key_prefix(queue))}*"
    return f"resetkeys {keys} resetchannels -@all " + " ".join(f"+{c}" for c in commands)
