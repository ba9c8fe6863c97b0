"""The JSON records on the wire: round trips, the bytes masters publish, hostile entries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workerpool.protocol import DeadLetter, MasterReport, PayloadError, Result, WorkerReport
from workerpool.queue import QueueStats

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text()
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
                           max_leaves=10)
finite = st.floats(allow_nan=False, allow_infinity=False)
workers = st.builds(WorkerReport, st.integers(1, 2**22), st.sampled_from(["permanent", "temporary"]),
                    st.booleans(), st.none() | finite)
masters = st.builds(MasterReport, st.text(), st.text(), st.text(), st.integers(1, 2**22),
                    st.integers(0, 100), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100),
                    st.integers(0, 100), st.lists(workers, max_size=4).map(tuple), st.integers(0, 10**6),
                    st.text(), finite)


@given(json_values)
def test_result_round_trip(value):
    assert Result.from_json(Result("ok", value).to_json()) == Result("ok", value)
    dead = Result("dead", error="ValueError: no", attempts=3)
    assert Result.from_json(dead.to_json()) == dead


@given(st.none() | st.text(min_size=1), st.text(), st.integers(0, 10**6), st.text(), st.text(),
       finite, st.binary())
def test_dead_letter_round_trip_keeps_the_element_byte_for_byte(task_id, queue, attempts, error,
                                                                 trace, failed_at, item):
    entry = DeadLetter(task_id, queue, attempts, error, trace, failed_at, item)
    assert DeadLetter.from_json(entry.to_json().encode()) == entry


@given(masters)
def test_master_report_round_trip(report):
    assert MasterReport.from_json(report.to_json()) == report
    assert MasterReport.from_json(report.to_json().encode()) == report


def test_master_report_writes_what_masters_have_always_published():
    """The bytes of json.dumps(Pool.published()) before MasterReport: key order and separators."""
    published = {"master": "m1", "pool": "emails", "host": "pod-a", "pid": 7, "min": 1, "max": 4,
                 "permanent": 1, "temporary": 1, "busy": 1,
                 "workers": [{"pid": 8, "role": "permanent", "busy": True, "task_s": 1.5},
                             {"pid": 9, "role": "temporary", "busy": False, "task_s": None}],
                 "crashes": 2, "last_crash": "killed by SIGKILL", "updated_at": 1700000000.25}
    report = MasterReport("m1", "emails", "pod-a", 7, 1, 4, 1, 1, 1,
                          (WorkerReport(8, "permanent", True, 1.5), WorkerReport(9, "temporary", False)),
                          2, "killed by SIGKILL", 1700000000.25)
    assert report.to_json() == json.dumps(published)
    assert MasterReport.from_json(json.dumps(published)) == report


def test_an_older_or_newer_master_entry_reads_with_defaults():
    report = MasterReport.from_json('{"master": "m", "host": "h", "pid": 3, "shiny_new": [1],'
                                    ' "workers": [{"pid": 4}], "last_crash": null}')
    assert report == MasterReport("m", "", "h", 3, workers=(WorkerReport(4, "", False),))


@pytest.mark.parametrize(("raw", "problem"), [
    ("", "not JSON"), ("[1]", "not a JSON object"), ("{}", "lack 'master'"),
    ('{"master": "m", "host": "h", "pid": "7"}', "pid='7'"),
    ('{"master": "m", "host": "h", "pid": true}', "pid=True"),
    ('{"master": "m", "host": "h", "pid": 1, "busy": 1.5}', "busy=1.5"),
    ('{"master": "m", "host": "h", "pid": 1, "workers": {}}', "workers={}"),
    ('{"master": "m", "host": "h", "pid": 1, "workers": [7]}', "worker's entry is 7"),
    ('{"master": "m", "host": "h", "pid": 1, "workers": [{"pid": 2, "busy": "yes"}]}', "busy='yes'"),
    ("[" * 100_000, "not JSON")])
def test_a_hostile_master_entry_is_a_payload_error_naming_the_problem(raw, problem):
    with pytest.raises(PayloadError, match=problem):
        MasterReport.from_json(raw)


@given(json_values | st.dictionaries(st.sampled_from(["master", "host", "pid", "workers", "busy",
                                                      "updated_at", "last_crash", "max"]),
                                     json_values | st.lists(json_values), max_size=8))
def test_any_json_reads_as_a_report_or_a_payload_error(data):
    try:
        report = MasterReport.from_dict(data)
    except PayloadError:
        return
    assert MasterReport.from_json(report.to_json()) == report  # what it read, it can write


@given(st.binary(max_size=200))
def test_any_bytes_read_as_a_report_or_a_payload_error(raw):
    try:
        MasterReport.from_json(raw)
    except PayloadError:
        pass


@given(st.lists(masters, max_size=3).map(tuple))
def test_queue_stats_dict_holds_the_published_dicts(reports):
    stats = QueueStats("q", 1, 2, 3, 4, 5, 6, 7, 8, reports)
    data = stats.to_dict()
    assert data["masters"] == [json.loads(r.to_json()) for r in reports]
    assert list(data)[:9] == ["queue", "backlog", "in_flight", "delayed", "dead_lettered", "processed",
                              "failed", "retried", "dead"]
    assert "unreadable" not in data
    assert QueueStats("q", 0, 0, 0, 0, unreadable=("master x: no",)).to_dict()["unreadable"] == [
        "master x: no"]


def test_a_number_too_big_for_a_float_is_a_payload_error():
    with pytest.raises(PayloadError, match="updated_at too big"):
        MasterReport.from_json('{"master": "m", "host": "h", "pid": 1, "updated_at": 1' + "0" * 400 + "}")
