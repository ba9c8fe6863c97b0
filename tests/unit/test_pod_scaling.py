"""The pod-level scaling decision, as a pure function."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from workerpool.operator.pod_scaling import PodBounds, PodSeen, Timers, decide_pods

BOUNDS = PodBounds(min_pods=1, max_pods=3, max_workers=4, stabilization_s=2, cooldown_s=60)


def pods(*busy: int, ready: bool = True) -> list[PodSeen]:
    return [PodSeen(f"p{i}", ready, b) for i, b in enumerate(busy)]


def test_a_backlog_the_pod_absorbs_adds_no_pod():
    decision, timers = decide_pods(pods(1), waiting=3, bounds=BOUNDS, timers=Timers(), now=0)
    assert decision.desired == 1 and timers == Timers()


def test_saturation_adds_pods_after_the_stabilization_window_in_proportion():
    decision, timers = decide_pods(pods(4), waiting=9, bounds=BOUNDS, timers=Timers(), now=10)
    assert decision.desired == 1 and timers.saturated_since == 10
    decision, timers = decide_pods(pods(4), waiting=9, bounds=BOUNDS, timers=timers, now=11.9)
    assert decision.desired == 1
    decision, timers = decide_pods(pods(4), waiting=9, bounds=BOUNDS, timers=timers, now=12)
    assert decision.desired == 3  # 9 unabsorbed / 4 per pod = 3, capped at max 3
    assert "backlog" in decision.reason and timers == Timers()


def test_a_starting_pod_counts_as_capacity_so_it_is_not_added_twice():
    seen = [PodSeen("p0", True, 4), PodSeen("p1", False, 0)]
    decision, _ = decide_pods(seen, waiting=4, bounds=BOUNDS, timers=Timers(saturated_since=0), now=100)
    assert decision.desired == 2


def test_scale_in_waits_for_the_cooldown_and_removes_the_idlest():
    seen = [PodSeen("a", True, 3), PodSeen("b", True, 0), PodSeen("c", True, 1)]
    decision, timers = decide_pods(seen, waiting=0, bounds=BOUNDS, timers=Timers(), now=0)
    assert decision.desired == 3 and timers.surplus_since == 0
    decision, timers = decide_pods(seen, waiting=0, bounds=BOUNDS, timers=timers, now=59)
    assert decision.desired == 3
    decision, timers = decide_pods(seen, waiting=0, bounds=BOUNDS, timers=timers, now=60)
    assert decision.desired == 1 and decision.remove == ("b", "c")
    assert "busy" in decision.reason


def test_load_returning_during_the_cooldown_restarts_it():
    seen = pods(4, 0)
    _, timers = decide_pods(seen, waiting=0, bounds=BOUNDS, timers=Timers(), now=0)
    _, timers = decide_pods(pods(4, 4), waiting=0, bounds=BOUNDS, timers=timers, now=30)
    assert timers == Timers()
    decision, _ = decide_pods(seen, waiting=0, bounds=BOUNDS, timers=timers, now=61)
    assert decision.desired == 2


def test_a_spec_edit_applies_at_once():
    decision, _ = decide_pods(pods(0, 0, 0), 0, PodBounds(1, 2, 4), Timers(), now=0)
    assert decision.desired == 2 and len(decision.remove) == 1
    decision, _ = decide_pods([], 0, PodBounds(2, 5, 4), Timers(), now=0)
    assert decision.desired == 2


look = st.tuples(st.lists(st.integers(0, 8), max_size=12), st.integers(0, 200), st.booleans())


@given(st.integers(0, 5), st.integers(1, 6), st.integers(1, 8), st.lists(look, min_size=1, max_size=30))
def test_invariants(lo, span, per_pod, looks):
    bounds = PodBounds(lo, lo + span, per_pod, stabilization_s=2, cooldown_s=10)
    timers, now = Timers(), 0.0
    for busy, waiting, starting in looks:
        seen = [PodSeen(f"p{i}", not (starting and i == 0), min(b, per_pod)) for i, b in enumerate(busy)]
        decision, timers = decide_pods(seen, waiting, bounds, timers, now)
        assert bounds.min_pods <= decision.desired <= bounds.max_pods
        assert len(decision.remove) == max(0, len(seen) - decision.desired)
        if decision.remove and bounds.min_pods <= len(seen) <= bounds.max_pods:
            # never removes a pod while the remaining ones could not take every busy worker
            # and every waiting task
            total_busy = sum(p.busy for p in seen)
            assert decision.desired * per_pod >= total_busy + waiting
            # the removed pods are the idlest ones
            kept = [p for p in seen if p.name not in decision.remove]
            removed = [p for p in seen if p.name in decision.remove]
            assert max((p.busy for p in removed if p.ready), default=0) <= min(
                (p.busy for p in kept if p.ready), default=math.inf)
        now += 1.0


@given(st.integers(0, 3), st.integers(1, 5), st.integers(1, 8), st.integers(0, 60), st.integers(0, 40))
def test_no_flapping_under_a_steady_load(lo, span, per_pod, busy_total, waiting):
    """Pods that follow their decisions under a steady load settle, then never change."""
    bounds = PodBounds(lo, lo + span, per_pod, stabilization_s=2, cooldown_s=10)
    count, timers, history = bounds.min_pods, Timers(), []
    for step in range(200):
        # the busy workers spread over the pods as far as they fit
        cap = count * per_pod
        busy = min(busy_total, cap)
        spread = [min(per_pod, max(0, busy - i * per_pod)) for i in range(count)]
        seen = [PodSeen(f"p{i}", True, b) for i, b in enumerate(spread)]
        queued = waiting + (busy_total - busy)
        decision, timers = decide_pods(seen, queued, bounds, timers, float(step))
        count = decision.desired
        history.append(count)
    settled = history[100:]
    assert len(set(settled)) == 1
