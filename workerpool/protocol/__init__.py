"""The Redis protocol: key names, the task envelope, the records and the Lua scripts.

Producers RPUSH onto the queue list; a worker moves tasks into its own processing list
(BLMOVE when idle, or a batch inside ACK_CLAIM when busy), so Redis always knows which worker
holds which task. A task leaves its processing list only when ACK_CLAIM records its outcome
(result stored, retry scheduled, or dead-lettered), or when RECOVER puts it back on the queue
after its worker died.

- keys: every key of a queue (Keys), the heartbeat members, the timing constants;
- envelope: the task envelope (Task, decode_item, envelope, retry_item, dumps);
- records: Result, DeadLetter and MasterReport, the other JSON on the wire;
- scripts: ACK_CLAIM, RECOVER and PROMOTE, and ACK_CLAIM's arguments (ack_claim_args).
"""

from ..errors import PayloadError
from .envelope import (
    ENVELOPE_PREFIX,
    MAX_ATTEMPTS_FIELD,
    MAX_VALUE_BYTES,
    BadItem,
    Task,
    decode_item,
    dumps,
    envelope,
    new_task_id,
    now_ms,
    raw_envelope,
    reset_attempts,
    retry_item,
    with_attempts,
)
from .keys import (
    ACK_FLUSH_INTERVAL_S,
    BATCH_WORK_S,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_TTL_S,
    PROMOTE_BATCH,
    Keys,
    hash_tag,
    key_prefix,
    queue_of,
)
from .records import DeadLetter, MasterReport, Result, WorkerReport
from .scripts import ACK_CLAIM, PROMOTE, RECOVER, Dead, Ok, Outcome, Retry, ack_claim_args

__all__ = [
    "ACK_CLAIM", "ACK_FLUSH_INTERVAL_S", "BATCH_WORK_S", "ENVELOPE_PREFIX", "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_TTL_S", "MAX_ATTEMPTS_FIELD", "MAX_VALUE_BYTES", "PROMOTE", "PROMOTE_BATCH",
    "RECOVER", "BadItem", "Dead", "DeadLetter", "Keys", "MasterReport", "Ok", "Outcome",
    "PayloadError", "Result", "Retry", "Task", "WorkerReport", "ack_claim_args", "decode_item",
    "dumps", "envelope", "hash_tag", "key_prefix", "new_task_id", "now_ms", "queue_of",
    "raw_envelope", "reset_attempts", "retry_item", "with_attempts",
]
