"""The scaling decision, as a pure function."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workerpool.master.scaling import Bounds, Decision, Observed, decide


def test_start_forks_the_permanent_workers():
    assert decide(Observed(0, 0, 0, 0), Bounds(3, 10)) == Decision(fork_permanent=3)


def test_burst_forks_temporaries_up_to_max():
    assert decide(Observed(3, 0, 3, 500), Bounds(3, 10)).fork_temporary == 7


def test_idle_workers_absorb_a_small_backlog():
    assert decide(Observed(3, 0, 1, 2), Bounds(3, 10)).fork_temporary == 0
    assert decide(Observed(3, 0, 1, 3), Bounds(3, 10)).fork_temporary == 1


def test_scale_up_backlog_knob():
    assert decide(Observed(3, 0, 3, 10), Bounds(3, 10, scale_up_backlog=5)).fork_temporary == 2


def test_crash_backoff_holds_permanent_forks():
    assert decide(Observed(1, 0, 0, 0), Bounds(3, 10), may_fork=False) == Decision()


def test_crash_backoff_holds_temporary_forks_too():
    """A poison task kills temporaries as well: the backoff must hold back every fork."""
    assert decide(Observed(3, 0, 3, 500), Bounds(3, 10), may_fork=False).fork_temporary == 0


def test_resize_down_retires():
    d = decide(Observed(5, 4, 0, 0), Bounds(2, 4))
    assert (d.retire_permanent, d.retire_temporary) == (3, 2)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 100), st.integers(0, 10**6),
       st.integers(0, 50), st.integers(1, 60), st.integers(1, 20), st.booleans())
def test_invariants(perm, temp, busy, waiting, lo, span, step, may):
    bounds = Bounds(min(lo, 50), min(lo, 50) + span, step)
    busy = min(busy, perm + temp)
    d = decide(Observed(perm, temp, busy, waiting), bounds, may)
    permanent = perm + d.fork_permanent - d.retire_permanent
    total = permanent + temp - d.retire_temporary + d.fork_temporary
    assert permanent <= bounds.min_workers  # never more permanent workers than minWorkers
    assert permanent == bounds.min_workers or not may
    assert may or d.fork_permanent + d.fork_temporary == 0
    assert d.fork_temporary == 0 or total <= bounds.max_workers
    assert min(d.fork_permanent, d.retire_permanent) == 0
    assert min(d.fork_temporary, d.retire_temporary) == 0
    if waiting == 0:
        assert d.fork_temporary == 0
