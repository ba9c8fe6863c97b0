"""Slot counters, the exit-reason label and the metrics address: pure logic, in process."""

from __future__ import annotations

import signal

import pytest

from workerpool.errors import SpecError
from workerpool.ledger import Ledger, exit_reason
from workerpool.metrics_server import parse_address
from workerpool.process import ExitCode, KillReason, Role
from workerpool.slots import BUCKETS_S, DURATION_BUCKET0, WAIT_BUCKET0, WAIT_SUM, SlotTable


def test_slot_counts_outcomes_and_buckets_and_the_ledger_keeps_them():
    table = SlotTable(4)
    index = table.acquire()
    writer = table.writer(index)
    for op in ("ok", "ok", "retry", "dead", ""):
        writer.begin(0, 0)
        writer.end(0, op)
    writer.waited(0.001)  # on a bound: counted in that bucket (le is inclusive)
    writer.waited(7200.0)  # past the last bound: +Inf
    assert table.counters(index) == [0.0] * len(table.counters(index))  # private until published
    writer.hold(0)  # after the Redis round trip that acknowledged those tasks
    counts = table.counters(index)
    assert counts[:3] == [2, 1, 1]  # "" (no outcome) is not counted
    assert sum(counts[DURATION_BUCKET0:DURATION_BUCKET0 + len(BUCKETS_S) + 1]) == 4
    assert counts[WAIT_BUCKET0] == 1 and counts[WAIT_BUCKET0 + len(BUCKETS_S)] == 1
    assert counts[WAIT_SUM] == pytest.approx(7200.001)
    ledger = Ledger()
    ledger.worker_exited(table, index, Role.TEMPORARY, "idle", lost=False)
    table.release(index)
    assert table.counters(table.acquire()) == [0.0] * len(counts)  # a reused slot starts at zero
    assert ledger.retired["temporary"] == counts and ledger.exits[("temporary", "idle")] == 1


@pytest.mark.parametrize(("status", "killed_for", "reason"), [
    (ExitCode.IDLE, None, "idle"), (ExitCode.OK, None, "stopped"), (ExitCode.RECYCLED, None, "recycled"),
    (-signal.SIGKILL, None, "killed"), (-signal.SIGSEGV, None, "crashed"),
    (ExitCode.CRASHED, None, "crashed"),
    (-signal.SIGKILL, KillReason.TASK_TIMEOUT, "timeout"),
    (-signal.SIGKILL, KillReason.ERROR_HANDLER_TIMEOUT, "timeout"),
    (-signal.SIGKILL, KillReason.SHUTDOWN, "shutdown"),
])
def test_exit_reason_is_a_small_closed_set(status, killed_for, reason):
    assert exit_reason(status, killed_for) == reason


@pytest.mark.parametrize(("address", "parsed"), [
    ("9464", ("", 9464)), (":9464", ("", 9464)), ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("[::1]:9464", ("::1", 9464)), ("localhost:80", ("localhost", 80)),
])
def test_metrics_address_forms(address, parsed):
    assert parse_address("--metrics-address", address) == parsed


@pytest.mark.parametrize("address", ["", "x", "1.2.3.4", "1.2.3.4:65536", "::1:80", "a:b"])
def test_bad_metrics_address_names_the_setting(address):
    with pytest.raises(SpecError, match=r"^--metrics-address: .* is invalid: PORT, :PORT"):
        parse_address("--metrics-address", address)
