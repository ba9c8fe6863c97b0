"""What master and worker processes share: exit codes, titles, parent-death signal, memory."""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import functools
import os
import signal

import setproctitle

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Workers volunteer as the kernel OOM killer's first choice (1000 = the most), so a handler that
# overruns the container's memory limit costs one worker (the master replaces it and the task
# is charged an attempt), never the master or the operator holding the pool together.
WORKER_OOM_SCORE_ADJ = 1000


class ExitCode(enum.IntEnum):
    """Why a worker exited; the master logs it and decides whether to replace it."""

    OK = 0  # told to stop, stopped
    CRASHED = 1  # an unexpected error (a worker: replaced; the master: after draining its workers)
    BOOT_FAILED = 3  # could not start (the master stops instead of fork-looping)
    IDLE = 10  # no task: a temporary worker after idleTimeoutSeconds; a burst (worker.burst) at once
    RECYCLED = 11  # maxTasksPerWorker or maxMemoryMiB reached
    ORPHANED = 12  # its master is gone

    @classmethod
    def describe(cls, status: int) -> str:
        """A word for a decoded wait status (negative = killed by that signal)."""
        if status < 0:
            return f"killed by {signal.Signals(-status).name}"
        try:
            return {cls.OK: "stopped", cls.CRASHED: f"crashed (exit code {int(cls.CRASHED)})",
                    cls.IDLE: "idle", cls.RECYCLED: "recycled", cls.ORPHANED: "orphaned",
                    cls.BOOT_FAILED: "boot failed"}[cls(status)]
        except ValueError:
            return f"crashed (exit code {status})"


class Role(enum.StrEnum):
    """What a worker is for (its process title, log lines, metric labels and published numbers)."""

    PERMANENT = "permanent"  # one of minWorkers: kept while the pool runs
    TEMPORARY = "temporary"  # forked for a backlog, leaves after idleTimeoutSeconds with no task


class KillReason(enum.StrEnum):
    """Why the master stopped a worker itself; a worker that exits on its own has none."""

    SHUTDOWN = "shutdown"  # the master is stopping: the task in hand is not charged an attempt
    TASK_TIMEOUT = "task timeout (killed)"  # the task outlived its alarm (user code ignores it)
    ERROR_HANDLER_TIMEOUT = "errorHandler timeout (killed)"  # the same, in the errorHandler


CLEAN_EXITS = frozenset({ExitCode.OK, ExitCode.IDLE, ExitCode.RECYCLED, ExitCode.ORPHANED})


def set_title(title: str) -> None:
    """Set the process title `ps` shows, e.g. 'workerpool: worker[permanent] pool=emails'."""
    setproctitle.setproctitle(f"workerpool: {title}")


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # find_library may run `ldconfig -p`: resolve once, in the master, before any fork
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def _prctl(option: int, arg: int) -> bool:
    libc = _libc()
    return libc is not None and int(libc.prctl(option, arg, 0, 0, 0)) == 0


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only)."""
    _prctl(_PR_SET_PDEATHSIG, int(sig))


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so nothing this process started escapes its reaping."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def parent_is(pid: int) -> bool:
    return os.getppid() == pid


def tie_to_parent(parent_pid: int) -> None:
    """Die (SIGKILL) with `parent_pid`, our parent; if it is already gone, exit now."""
    die_with_parent(signal.SIGKILL)
    if not parent_is(parent_pid):
        os._exit(ExitCode.ORPHANED)


def prefer_oom_kill(score_adj: int = WORKER_OOM_SCORE_ADJ) -> bool:
    """Raise this process's oom_score_adj (raising needs no privilege; lowering would)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(score_adj))
    except OSError:  # not Linux, or /proc read-only: the kernel's own choice stands
        return False
    return True


def private_memory_mib() -> float:
    """This process's private (unshared) memory in MiB, from /proc/self/smaps_rollup."""
    total_kib = 0
    with open("/proc/self/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                total_kib += int(line.split()[1])
    return total_kib / 1024
