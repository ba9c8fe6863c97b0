"""The key layout for Redis Cluster: every key of a queue in the queue's own slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from workerpool.acl import acl_pattern, acl_rules
from workerpool.protocol import Keys, hash_tag, key_prefix, queue_of

NAMES = ["emails", "a:b", "ünï", "{tag}q", "q{tag}", "x{y", "a*b?[c]\\", "{emails}x"]


@pytest.mark.parametrize("name", NAMES)
def test_every_internal_key_hashes_like_the_queue(name):
    keys = Keys(name)
    slot = key_slot(name.encode())
    for key in (keys.stats, keys.delayed, keys.dead, keys.alive, keys.masters, keys.seq,
                keys.result("id"), keys.processing("m.1.ff")):
        assert key_slot(key.encode()) == slot, key


def test_a_name_with_a_closing_brace_and_no_tag_cannot_share_its_slot():
    """Documented: no key other than the name itself hashes like 'x{}y' (an empty tag)."""
    assert key_slot(Keys("x{}y").stats.encode()) != key_slot(b"x{}y")


def test_the_prefix_wraps_a_plain_name_and_keeps_a_tagged_one():
    assert key_prefix("emails") == "{emails}:wp:"
    assert key_prefix("{tenant1}.emails") == "{tenant1}.emails:wp:"
    assert hash_tag("x{}y") is None and hash_tag("a{b}c{d}") == "b"


@pytest.mark.parametrize("name", ["emails", "{t}q", "a*b"])
def test_a_masters_key_names_its_queue(name):
    assert queue_of(Keys(name).masters) == name


def test_other_keys_name_no_queue():
    assert queue_of("emails:wp:masters") is None  # the old layout's key
    assert queue_of("{emails}:wp:stats") is None


def test_the_acl_pattern_matches_only_the_queue():
    assert acl_pattern("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
    rules = acl_rules("emails")
    assert "~emails ~{emails}:wp:*" in rules and "-@all" in rules
    assert not any(w in rules for w in ("+@", "+keys", "+flushall", "+config", "+command"))
    assert "+cluster|slots" in acl_rules("emails", cluster=True)
