"""The operator's pure parts: the generated CRD, status building, the deploy/ manifests."""

from __future__ import annotations

import dataclasses
import logging

import yaml
from helpers import ROOT

from workerpool.operator import crd
from workerpool.operator import status as st
from workerpool.protocol import MasterReport
from workerpool.queue import QueueStats
from workerpool.spec import FIELDS, manifest_of, parse_manifest
from workerpool.target import Target

DEPLOY = ROOT / "deploy"


def test_deploy_crd_is_the_generated_one():
    assert (DEPLOY / "crd.yaml").read_text() == crd.render(), \
        "deploy/crd.yaml is stale: python -m workerpool.operator.crd > deploy/crd.yaml"


def test_crd_spec_fields_and_defaults_match_the_validator():
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for f in FIELDS:
        prop = schema["properties"][f.name]
        assert prop["type"] == f.kind
        assert prop.get("default") == f.default
        assert prop.get("minimum") == f.minimum and prop.get("maximum") == f.maximum
    assert set(schema["properties"]) == {f.name for f in FIELDS} | {"redis", "pods"}


def test_manifest_for_the_master_round_trips_without_the_url():
    doc = {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": "p"},
           "spec": {"handler": "a:b", "minWorkers": 2, "redis": {"url": "redis://:pw@h/0"}}}
    spec = parse_manifest(doc)
    again = parse_manifest(manifest_of(spec))
    assert again.redis_url is None and "pw" not in str(manifest_of(spec))
    assert dataclasses.replace(again, redis_url=spec.redis_url) == spec
    # where it runs travels beside the manifest, resolved once
    assert Target.of(again, override=spec.redis_url) == Target("redis://:pw@h/0")


def test_status_counts_only_our_master():
    stats = QueueStats("q", backlog=5, in_flight=0, delayed=0, dead_lettered=0, processed=9,
                       failed=1, masters=(
                           MasterReport("m1", "p", "pod", 10, permanent=3, temporary=2, busy=4),
                           MasterReport("m2", "p", "other", 11, permanent=3)))
    assert st.counts(stats, 10, "pod") == {"permanentWorkers": 3, "temporaryWorkers": 2,
                                           "busyWorkers": 4, "backlog": 5, "processed": 9,
                                           "failed": 1, "deadLettered": 0}


def test_conditions_keep_transition_time_until_they_flip():
    ok = st.conditions(None, 3, None)
    assert [(c["type"], c["status"]) for c in ok] == [("Ready", "True"), ("Degraded", "False")]
    stamped = [{**c, "lastTransitionTime": "2020-01-01T00:00:00Z"} for c in ok]
    assert st.conditions(None, 4, stamped)[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    bad = st.conditions(st.Problem("RedisUnavailable", "x"), 4, stamped)
    assert bad[1]["status"] == "True" and bad[1]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_scale_events():
    assert st.scale_events({"temporaryWorkers": 0}, {"temporaryWorkers": 7}) == [
        ("ScaledUp", "temporary workers 0 -> 7")]
    assert st.scale_events({}, {"temporaryWorkers": 7}) == []


def test_operator_deployment_is_hardened():
    docs = list(yaml.safe_load_all((DEPLOY / "operator.yaml").read_text()))
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [c] = pod["containers"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert "livenessProbe" in c and "limits" in c["resources"]
    assert pod["terminationGracePeriodSeconds"] > 30 + 5  # default shutdownGraceSeconds + margin


def test_crash_events_count_only_new_crashes():
    stats = QueueStats("q", 0, 0, 0, 0, masters=(
        MasterReport("m1", "p", "pod", 10, crashes=3, last_crash="killed by SIGKILL"),))
    assert st.crash_event(stats, 10, "pod", 1) == (3, "2 worker(s) died abnormally; last: killed by SIGKILL")
    assert st.crash_event(stats, 10, "pod", 3) == (3, None)
    assert st.crash_event(stats, 99, "pod", 0) == (0, None)


def test_status_patch_holds_only_changes():
    conds = st.conditions(None, 2, None)
    current = {"backlog": 3, "processed": 9, "observedGeneration": 2, "conditions": conds}
    wanted = {"backlog": 0, "processed": 9, "observedGeneration": 2,
              "conditions": st.conditions(None, 2, conds)}
    assert st.changed(current, wanted) == {"backlog": 0}


def test_a_starting_pool_is_not_ready_and_not_degraded():
    ready, degraded = st.conditions(st.Problem.starting("the master is being started"), 1, None)
    assert (ready["status"], ready["reason"]) == ("False", "Starting")
    assert (degraded["status"], degraded["reason"]) == ("False", "Starting")


def test_status_build_writes_only_what_changed():
    first = st.build({"backlog": 3}, None, 2, {})
    assert first["backlog"] == 3 and first["observedGeneration"] == 2
    assert st.build({"backlog": 3}, None, 2, first) == {}
    assert st.build({"backlog": 4}, None, 2, first) == {"backlog": 4}


def test_kopf_per_object_chatter_is_dropped_but_our_own_lines_kept():
    from workerpool.operator.handlers import _OwnLinesOnly

    def record(path, level):
        return logging.LogRecord("kopf.objects", level, path, 1, "msg", None, None)

    keep = _OwnLinesOnly().filter
    assert not keep(record("/venv/site-packages/kopf/_core/actions/execution.py", logging.INFO))
    assert keep(record("/venv/site-packages/kopf/_core/actions/execution.py", logging.WARNING))
    assert keep(record("/src/workerpool/operator/master_daemon.py", logging.INFO))


def test_a_pool_is_resolved_once_per_spec_and_again_after_an_edit():
    from workerpool.operator.pool_state import PoolState

    state = PoolState()
    spec = {"handler": "m:f", "redis": {"url": "redis://:pw@h:1/0"}}
    first = state.resolve("p", "ns", spec)
    assert state.resolve("p", "ns", dict(spec)) is first  # the same content: no new parse, no Secret read
    edited = state.resolve("p", "ns", {**spec, "minWorkers": 2})
    assert edited is not first and edited[0].min_workers == 2 and edited[1] == Target("redis://:pw@h:1/0")
    assert "pw" not in repr(state)
