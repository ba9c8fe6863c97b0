"""One kopf daemon per WorkerPool whose master runs in the operator's pod: the master's owner.

The daemon is the only code that starts, reloads, restarts or stops its pool's master, so no
two handlers can race to start one. kopf spawns it for every such pool it sees (on creation
and when the operator starts, which is how a pool resumes after a restart), stops it when the
pool is deleted, moves into worker pods (`spec.pods`) or the operator exits, and holds the
pool's finalizer until it returns: the master has drained by then.

Its `spec` is kopf's live view of the object, so a spec edit reaches it without a message;
the update handler only wakes it so the edit applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import kopf

from .crd import RESOURCE
from .masters import MasterProcess, Masters
from .pool_state import PoolState, in_operator, pool_key, pool_state, registry
from .secrets import SECRET_RETRY_S
from .status import Problem

#: how often the daemon looks at its master (has it exited?) when nothing wakes it
LOOK_INTERVAL_S = 0.5
#: a master that exited is started again after this: a handler that cannot even import must
#: not fork-loop the operator, and its MasterExited condition stays readable meanwhile
RESTART_BACKOFF_S = 5.0


@kopf.daemon(*RESOURCE, id="master", when=in_operator)
def own_master(name: str, namespace: str, spec: kopf.Spec, body: kopf.Body, memo: kopf.Memo,
               stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any) -> None:
    """Run the pool's master until the pool goes; restart it (after a backoff) if it exits."""
    owner = _Owner(pool_key(namespace, name), name, namespace, spec, body, registry(memo),
                   pool_state(memo), logger)
    try:
        while not stopped:
            owner.look()
            owner.state.wake.wait(LOOK_INTERVAL_S)
            owner.state.wake.clear()
    finally:
        code = owner.masters.stop(owner.key)  # drains: the finalizer stays until tasks are done
        if code is not None:
            logger.info(f"master stopped ({_why(stopped)}): exit code {code}")


@dataclass
class _Owner:
    """What one run of a pool's daemon works with; `spec` and `body` are kopf's live views."""

    key: str
    name: str
    namespace: str
    spec: kopf.Spec
    body: kopf.Body
    masters: Masters
    state: PoolState
    logger: kopf.Logger

    def look(self) -> None:
        """Start the master, apply an edit, or report the master's exit."""
        try:
            parsed, target = self.state.resolve(self.name, self.namespace, dict(self.spec))
        except kopf.PermanentError as e:  # the update handler logged it; wait for the next edit
            if self.key not in self.masters.running:
                self.state.problem = Problem("InvalidSpec", str(e))
            return
        except kopf.TemporaryError as e:  # a Secret not there yet
            self.state.problem = Problem("InvalidSpec", str(e))
            raise kopf.TemporaryError(str(e), delay=SECRET_RETRY_S) from None
        master = self.masters.running.get(self.key)
        if master is None:
            master = self.masters.start(self.key, parsed, target)
            self.state.problem = None
            self.logger.info(f"master started: pid {master.pid}, queue {parsed.queue}, "
                             f"redis {target}")
        elif (code := master.exited()) is not None:
            self._exited(master, code)
        elif (parsed, target) != (master.spec, master.target):
            master = self.masters.reconfigure(self.key, parsed, target)
            self.logger.info(f"master reconfigured: pid {master.pid}")

    def _exited(self, master: MasterProcess, code: int) -> NoReturn:
        message = f"master exited with code {code}: {master.last_error() or 'see the operator log'}"
        self.state.problem = Problem("MasterExited", message)
        kopf.warn(self.body, reason="MasterExited", message=message + "; restarting")
        # the daemon ends here (its `finally` forgets the master); kopf runs it again after the delay
        raise kopf.TemporaryError(message, delay=RESTART_BACKOFF_S)


def _why(stopped: kopf.DaemonStopped) -> str:
    """'resource deleted', 'operator exiting', 'filter mismatch' (now in pods), or 'exited'."""
    reason = stopped.reason.name if stopped.reason is not None else None
    return (reason or "exited").lower().replace("_", " ")
