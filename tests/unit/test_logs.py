"""Log lines carry time, role, pid and the event, as text or JSON."""

from __future__ import annotations

import json
import logging
import os
import re

from workerpool import logs


def test_text_and_json_lines(capsys):
    logs.setup("INFO", "text")
    logs.set_role("temporary")
    try:
        logs.event("task finished", id="abc", backlog=3)
        logs.event("not shown", level=logging.DEBUG)
        line = capsys.readouterr().err.strip()
        assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} temporary\[{os.getpid()}\] "
                            r"INFO task finished id=abc backlog=3", line), line
        logs.setup("INFO", "json")
        logs.event("worker exited", reason="killed by SIGKILL")
        entry = json.loads(capsys.readouterr().err)
        assert entry["role"] == "temporary" and entry["pid"] == os.getpid()
        assert entry["event"] == "worker exited" and entry["reason"] == "killed by SIGKILL"
    finally:
        logs.set_role("master")


def test_a_worker_holds_info_lines_until_flush_and_writes_warnings_at_once(capsys):
    logs.setup("INFO", "text")
    logs.buffer_until_flush()
    try:
        logs.event("task finished", id="a", ms=0.1, backlog=2)
        logs.event("task finished", id="b", ms=0.1, backlog=1)
        assert capsys.readouterr().err == ""  # held: one write per batch, not per line
        logs.event("task retry", level=logging.WARNING, id="c", error="ValueError: x")
        lines = capsys.readouterr().err.splitlines()
        assert [line.split(" INFO ")[-1] for line in lines[:2]] == [
            "task finished id=a ms=0.1 backlog=2", "task finished id=b ms=0.1 backlog=1"]
        assert lines[2].endswith('WARNING task retry id=c error="ValueError: x"')
        logs.event("task finished", id="d", ms=0.1, backlog=0)
        logs.flush()
        assert capsys.readouterr().err.endswith("task finished id=d ms=0.1 backlog=0\n")
    finally:
        logs.setup("INFO", "text")  # unbuffered again for the other tests


def test_an_event_with_a_traceback_goes_through_logging_in_order(capsys):
    logs.setup("INFO", "json")
    logs.buffer_until_flush()
    try:
        logs.event("task finished", id="a", ms=0.1, backlog=0)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logs.event("worker failed", level=logging.CRITICAL, exc_info=True)
        entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [e["event"] for e in entries] == ["task finished", "worker failed"]
        assert "RuntimeError: boom" in entries[1]["traceback"]
    finally:
        logs.setup("INFO", "text")
