"""The envelope: decoding ours and foreign elements, attempt rewrites."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workerpool import protocol
from workerpool.protocol import BadItem, decode_item

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text()
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
                           max_leaves=10)


@given(json_values, st.integers(0, 99))
def test_envelope_round_trip(payload, attempts):
    item = protocol.envelope("abc", protocol.dumps(payload), attempts, 5).encode()
    task = decode_item(item)
    assert (task.task_id, task.attempts, task.payload) == ("abc", attempts, payload)
    again = decode_item(protocol.retry_item(task, attempts + 1))
    assert (again.task_id, again.attempts, again.payload) == ("abc", attempts + 1, payload)
    assert decode_item(protocol.reset_attempts(item)).attempts == 0


@pytest.mark.parametrize(("raw", "payload"), [
    (b'{"to": "ada"}', {"to": "ada"}), (b"0", 0), (b'""', ""), (b"", ""), (b"plain", "plain"),
    (b"null", None), (b"false", False)])
def test_foreign_elements(raw, payload):
    task = decode_item(raw)
    assert (task.task_id, task.attempts, task.payload) == (None, 0, payload)
    retried = decode_item(protocol.retry_item(task, 1))
    assert (retried.attempts, retried.payload) == (1, payload)


def test_not_utf8():
    with pytest.raises(BadItem, match="UTF-8"):
        decode_item(b"\xff")


def test_nan_payload_refused():
    with pytest.raises(protocol.PayloadError):
        protocol.dumps(float("nan"))
    assert json.loads(protocol.dumps({"a": "é"})) == {"a": "é"}


@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: (protocol.ENVELOPE_PREFIX + t).encode()))
def test_any_bytes_decode_or_raise_bad_item_only(item):
    """A worker decodes whatever a producer pushed: BadItem is the only way to fail."""
    try:
        task = decode_item(item)
    except BadItem:
        return
    if task.task_id is not None:  # accepted as ours: a retry rewrites only the attempt count
        again = decode_item(protocol.retry_item(task, task.attempts + 1))
        assert (again.task_id, again.attempts) == (task.task_id, task.attempts + 1)


def test_deep_json_is_a_bad_item_not_a_recursion_error():
    with pytest.raises(BadItem, match="nested deeper"):
        decode_item(b"[" * 100_000)


def test_a_retry_rewrites_only_the_attempt_count():
    item = protocol.envelope("id1", '{"b":1.0000000000000000001,"a":[1e400]}', 2, 5).encode()
    again = protocol.retry_item(decode_item(item), 3)
    assert again == item.replace(b'"attempts":2', b'"attempts":3')  # payload byte for byte


@given(json_values)
def test_result_round_trip(value):
    assert protocol.Result.from_json(protocol.Result("ok", value).to_json()) == protocol.Result("ok", value)
    dead = protocol.Result("dead", error="E: x", attempts=3)
    assert protocol.Result.from_json(dead.to_json()) == dead


@pytest.mark.parametrize("raw", [b"garbage", b"[1]", b'{"status":"maybe"}', b"[" * 5000])
def test_a_result_element_that_is_not_ours_is_a_clear_error(raw):
    with pytest.raises(protocol.PayloadError, match="not a workerpool result element"):
        protocol.Result.from_json(raw)


@given(st.binary(max_size=100), st.text(max_size=50))
def test_dead_letter_round_trip_keeps_the_element_byte_for_byte(item, error):
    entry = protocol.DeadLetter("id", "q", 2, error, "tb", 1.5, item)
    again = protocol.DeadLetter.from_json(entry.to_json())
    assert again == entry
    assert json.loads(entry.to_json())["queue"] == "q"


def test_a_value_redis_cannot_store_is_refused_up_front(monkeypatch):
    """Bigger than proto-max-bulk-len: the worker would retry recording it forever."""
    monkeypatch.setattr(protocol, "MAX_VALUE_BYTES", 100)
    assert protocol.dumps("x" * 90)
    with pytest.raises(protocol.PayloadError, match="more than Redis stores"):
        protocol.dumps("x" * 200)
    with pytest.raises(protocol.PayloadError, match="more than Redis stores"):
        protocol.dumps("\udcff" * 20)  # escaped: 6 bytes each


def test_lone_surrogates_are_escaped_not_left_to_the_redis_client():
    assert protocol.dumps({"t": "a\udcffé"}) == '{"t":"a\\udcff\\u00e9"}'
    assert protocol.dumps({"t": "é"}) == '{"t":"é"}'
