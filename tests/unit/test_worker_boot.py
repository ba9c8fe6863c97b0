"""A forked worker's boot (worker/boot.py) in pytest's own process, with the process-wide
calls (os._exit, prctl, oom_score_adj, the title) replaced at the OS boundary."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from workerpool.process import ExitCode, Role
from workerpool.slots import SlotTable
from workerpool.spec import PoolSpec
from workerpool.worker import WorkerConfig, boot

MASTER_PID = 4242


class Exited(Exception):
    """os._exit, replaced: the test sees the code instead of losing its process."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The boot's process-wide calls, recorded in order."""
    done: list[Any] = []

    def exit_(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(boot.os, "_exit", exit_)
    monkeypatch.setattr(boot, "tie_to_parent", lambda pid: done.append(("tie_to_parent", pid)))
    monkeypatch.setattr(boot, "prefer_oom_kill", lambda: done.append("prefer_oom_kill"))
    monkeypatch.setattr(boot.logs, "set_role", lambda role: done.append(("role", role)))
    monkeypatch.setattr(boot, "set_title", lambda title: done.append(("title", title)))
    return done


def seed() -> Any:
    table = SlotTable(1)
    config = WorkerConfig(PoolSpec(name="emails", handler="handlers:echo", queue="emails"), Role.TEMPORARY,
                          "m.0.1", MASTER_PID, table.writer(table.acquire()), print, None)
    return SimpleNamespace(worker=SimpleNamespace(cfg=config), forked_at=1.5)


def become(monkeypatch: pytest.MonkeyPatch, steps: list[Any], child_setup: Any,
           serve: Any) -> int:
    monkeypatch.setattr(boot, "serve", serve)
    with pytest.raises(Exited) as exited:
        boot.become_worker(seed(), child_setup)
    return exited.value.code


def test_the_boot_runs_in_order_and_exits_with_the_serving_loops_code(monkeypatch, steps):
    def serve(worker: Any, forked_at: float) -> ExitCode:
        steps.append(("serve", forked_at))
        return ExitCode.IDLE

    code = become(monkeypatch, steps, lambda: steps.append("child_setup"), serve)
    assert code == ExitCode.IDLE
    assert steps == ["child_setup", ("tie_to_parent", MASTER_PID), "prefer_oom_kill",
                     ("role", Role.TEMPORARY), ("title", "worker[temporary] pool=emails"),
                     ("serve", 1.5)]


def test_a_failure_before_serving_is_a_boot_failure(monkeypatch, steps):
    def child_setup() -> None:
        raise OSError("the master's pipe is already closed")

    code = become(monkeypatch, steps, child_setup, lambda worker, forked_at: ExitCode.OK)
    assert code == ExitCode.BOOT_FAILED  # the master stops instead of fork-looping
    assert steps == []


def test_a_failure_while_serving_is_a_crash(monkeypatch, steps):
    def serve(worker: Any, forked_at: float) -> ExitCode:
        raise RuntimeError("unexpected")

    assert become(monkeypatch, steps, lambda: None, serve) == ExitCode.CRASHED
