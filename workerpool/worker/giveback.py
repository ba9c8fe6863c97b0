"""Give a worker's unstarted tasks back to the queue when the task it runs turns out slow.

A worker claims a batch sized by its recent task durations (see Worker.batch_size), but a batch
of 1 ms tasks can hold a 1 s one: the tasks behind it would wait a second while other workers
sit idle, or before the master has forked the temporaries a burst calls for. So while a handler
runs, a helper thread watches the clock; once the task has run GIVE_BACK_AFTER_S, the thread
moves the worker's unstarted tasks back to the queue head (in order, in one ACK_CLAIM call on
its own connection) and drops them from the worker's hand.

The worker's main thread holds `lock` except while it is inside a handler, so the helper only
ever sees the worker's hand between "handler started" and "handler returned": it can never
take a task the main thread is about to start. The helper is a daemon thread started in the
forked worker the first time the worker holds a task behind the next one; it does nothing but
sleep while the worker holds none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import redis

from .. import logs, protocol
from ..connection import connect
from ..protocol import Keys
from ..redis_errors import REDIS_ERRORS
from ..slots import SlotWriter

# "a few milliseconds": long enough that a batch of short tasks never trips it, short enough
# that a task claimed behind a slow one starts elsewhere almost at once
GIVE_BACK_AFTER_S = 0.01


class GiveBack:
    """The helper thread of one worker; `started()` is called with `lock` held."""

    def __init__(self, redis_url: str, keys: Keys, processing: str, in_hand: deque[bytes],
                 slot: SlotWriter) -> None:
        self.lock = threading.Lock()
        self.holding = threading.Event()  # set when the worker may hold unstarted tasks
        self.task_started = 0.0  # time.monotonic() when the current handler started
        self.given_back = 0
        self.active = False  # started: the main thread holds `lock` outside handlers
        self._url = redis_url
        self._keys = keys
        self._processing = processing
        self._in_hand = in_hand
        self._slot = slot
        self._redis: redis.Redis | None = None
        self._script: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self) -> None:
        """The worker holds tasks behind the one it starts next: keep an eye on the clock.

        Called by the main thread outside handlers. The thread starts on first use (in the
        forked worker), so a worker that never holds a second task never pays for it (~0.3 MiB).
        """
        if not self.active:
            self.lock.acquire()  # the main thread's, except while it runs a handler
            self.active = True
            self._thread = threading.Thread(target=self._run, name="give-back", daemon=True)
            self._thread.start()
        self.holding.set()

    def close(self) -> None:
        """Stop the thread and close its connection (a worker that serves in a process it does
        not end, worker/inprocess.py). Called by the main thread outside handlers."""
        if self._thread is not None:
            self._closed = True
            self.holding.set()
            self.lock.release()
            self._thread.join()
            self._thread = None
            self.active = False
        if self._redis is not None:
            self._redis.close()

    def _run(self) -> None:
        while not self._closed:
            self.holding.wait()
            # the racy read only decides how long to sleep; the decision is taken under the lock
            due = self.task_started + GIVE_BACK_AFTER_S - time.monotonic()
            if due > 0:
                time.sleep(due)  # a timer, not synchronisation: re-checked under the lock
                continue
            with self.lock:  # free only while the main thread runs a handler
                if self._closed:
                    return
                if not self._in_hand:
                    self.holding.clear()
                elif time.monotonic() - self.task_started >= GIVE_BACK_AFTER_S:
                    self._give_back()
                    logs.flush()  # the lines of the batch's earlier tasks: not after this one

    def _give_back(self) -> None:
        items = list(self._in_hand)
        try:
            if self._redis is None:
                self._redis = connect(self._url, socket_timeout=5)
                self._script = self._redis.register_script(protocol.ACK_CLAIM)
            keys = [self._keys.queue, self._processing, self._keys.stats, self._keys.delayed,
                    self._keys.dead]
            self._script(keys, [0, 0, 0, len(items), *items])  # no claim, no outcome
        except REDIS_ERRORS as e:
            # the worker keeps them and serves them itself; if the call went through and only
            # the reply was lost (redis-py retried it, which pushes nothing twice), they may
            # run twice: at-least-once, as after a crash
            logs.event("could not give back unstarted tasks", level=logging.WARNING, error=str(e))
            self.holding.clear()
            return
        self._in_hand.clear()
        self._slot.hold(0)  # what the master counts as waiting is in the queue now
        self.given_back += len(items)
        self.holding.clear()
