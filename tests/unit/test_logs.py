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
