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
