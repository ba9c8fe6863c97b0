"""The Redis key names of a queue, the heartbeat members, and the protocol's timing constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

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

# Keys.alive members: a worker's is WORKER_MEMBER + its id, a master's MASTER_MEMBER + its id.
WORKER_MEMBER = "w:"
MASTER_MEMBER = "m:"


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
        """Sorted set alive_master(id) / alive_worker(id) -> heartbeat deadline in ms."""
        return self._k("alive")

    @property
    def masters(self) -> str:
        """Hash master id -> MasterReport JSON: the numbers that master publishes."""
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

    def processing_of(self, worker_id: bytes) -> bytes:
        """processing() for an id read back from Redis (bytes: a hand-written one need not be UTF-8)."""
        return self.processing("").encode() + worker_id

    @overload
    @staticmethod
    def alive_worker(worker_id: str) -> str: ...
    @overload
    @staticmethod
    def alive_worker(worker_id: bytes) -> bytes: ...
    @staticmethod
    def alive_worker(worker_id: str | bytes) -> str | bytes:
        """A worker's member of Keys.alive."""
        if isinstance(worker_id, bytes):
            return WORKER_MEMBER.encode() + worker_id
        return WORKER_MEMBER + worker_id

    @overload
    @staticmethod
    def alive_master(master_id: str) -> str: ...
    @overload
    @staticmethod
    def alive_master(master_id: bytes) -> bytes: ...
    @staticmethod
    def alive_master(master_id: str | bytes) -> str | bytes:
        """A master's member of Keys.alive."""
        if isinstance(master_id, bytes):
            return MASTER_MEMBER.encode() + master_id
        return MASTER_MEMBER + master_id

    @staticmethod
    def parse_alive(member: bytes) -> tuple[Literal["worker", "master"], bytes]:
        """(whose, id) of a Keys.alive member, in bytes (a hand-written one need not be UTF-8).

        Anything that is not a worker's member counts as a master's: when it expires, the
        master's published numbers under the text after the first ':' are forgotten with it.
        """
        kind, _, ident = member.partition(b":")
        return ("worker" if kind + b":" == WORKER_MEMBER.encode() else "master"), ident
