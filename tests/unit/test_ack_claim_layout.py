"""ACK_CLAIM's arguments as ack_claim_args lays them out, and the heartbeat members."""

from __future__ import annotations

import pytest

from workerpool.protocol import ACK_CLAIM, Dead, Keys, Ok, Retry, ack_claim_args

KEYS = Keys("emails")


def test_layout_of_a_batch():
    outcomes = [Ok(b"a", "id-a", '{"status":"ok","value":1}'), Retry(b"b", "", 1234, b"b2"),
                Dead(b"c", "id-c", '{"id":"id-c"}', '{"status":"dead"}'), Ok(b"d", "", "")]
    keys, args = ack_claim_args(KEYS, KEYS.processing("w1"), outcomes, n_claim=3,
                                result_ttl_ms=60000, release=False, back=[b"x", b"y"])
    assert keys == [KEYS.queue, KEYS.processing("w1"), KEYS.stats, KEYS.delayed, KEYS.dead,
                    KEYS.result("id-a"), KEYS.result(""), KEYS.result("id-c"), KEYS.result("")]
    assert args == [3, 60000, 0, 2, b"x", b"y",
                    "ok", b"a", "id-a", '{"status":"ok","value":1}', "",
                    "retry", b"b", "", 1234, b"b2",
                    "dead", b"c", "id-c", '{"id":"id-c"}', '{"status":"dead"}',
                    "ok", b"d", "", "", ""]


def test_the_script_finds_each_outcome_where_the_layout_puts_it():
    """The Lua side of the contract: outcomes start after the n_back items, 5 each, and the
    result key of the outcome at ARGV[i] is KEYS[6 + (i - first) / 5]."""
    assert "local first = 5 + n_back" in ACK_CLAIM
    assert "for i = first, #ARGV, 5 do" in ACK_CLAIM
    assert "KEYS[6 + (i - first) / 5]" in ACK_CLAIM
    keys, args = ack_claim_args(KEYS, "p", [Ok(b"a", "i1", "r"), Dead(b"b", "i2", "e", "r")],
                                n_claim=0, result_ttl_ms=0, release=True, back=[b"z"])
    first = 5 + int(args[3])  # 1-based, as in Lua
    for n, i in enumerate(range(first, len(args) + 1, 5)):
        assert keys[6 + (i - first) // 5 - 1] == KEYS.result(str(args[i + 1]))  # ARGV[i+2] = id
        assert args[i - 1] == ["ok", "dead"][n]
    assert args[2] == 1  # release


def test_outcomes_are_frozen_and_name_their_op():
    done = Retry(b"b", "", 1, b"b2")
    ops = (Ok(b"a", "", "").op, done.op, Dead(b"c", "", "{}", "").op)
    assert ops == ("ok", "retry", "dead")
    with pytest.raises(AttributeError):
        done.due_ms = 2  # type: ignore[misc]


@pytest.mark.parametrize("ident", ["w-1", "host:123:abc", ""])
def test_heartbeat_members_parse_back(ident):
    assert Keys.alive_worker(ident) == "w:" + ident and Keys.alive_master(ident) == "m:" + ident
    raw = ident.encode()
    assert Keys.alive_worker(raw) == Keys.alive_worker(ident).encode()
    assert Keys.parse_alive(Keys.alive_worker(raw)) == ("worker", raw)
    assert Keys.parse_alive(Keys.alive_master(raw)) == ("master", raw)


def test_a_hand_written_member_counts_as_a_master_s():
    assert Keys.parse_alive(b"\xff:x") == ("master", b"x")
    assert Keys.parse_alive(b"wx") == ("master", b"")
    assert KEYS.processing_of(b"\xff") == KEYS.processing("").encode() + b"\xff"
