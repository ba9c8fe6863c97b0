"""`workerpool top`: a live terminal view of the pools on one Redis, refreshed in place.

It reads what every master already publishes (Keys.masters) and the queue's counters, once
per interval: workers by role with their state and current task's age, the backlog with a
small history, task rates and dead letters. `q` or Ctrl+C quits; rich draws the screen.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import protocol
from .protocol import Keys, MasterReport
from .queue import QueueStats, read_queue_stats

HISTORY = 24  # backlog samples kept per queue for the sparkline
MAX_WORKER_ROWS = 10  # per queue; the rest are summed up in one line
_SPARKS = "▁▂▃▄▅▆▇█"
_MASTERS_SUFFIX = ":wp:masters"


@dataclass(slots=True)
class QueueView:
    """What `top` remembers of one queue between two refreshes."""

    backlog: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY))
    last: tuple[float, int, int] | None = None  # (time, processed, failed) at the previous refresh
    rates: tuple[float, float] = (0.0, 0.0)  # processed/s, failed/s


def discover(r: redis.Redis) -> list[str]:
    """Every queue on this Redis that a master has published numbers for."""
    keys = (k.decode("utf-8", "replace") for k in r.scan_iter(match="*" + _MASTERS_SUFFIX, count=500))
    return sorted({q for q in map(protocol.queue_of, keys) if q is not None})


def sample(r: redis.Redis, queues: list[str], views: dict[str, QueueView]) -> dict[str, QueueStats]:
    """Read each queue's stats and update its history and rates."""
    now = time.monotonic()
    out = {}
    for name in queues:
        stats = read_queue_stats(r, Keys(name))
        view = views.setdefault(name, QueueView())
        view.backlog.append(stats.backlog)
        if view.last is not None and now > view.last[0]:
            dt = now - view.last[0]
            view.rates = ((stats.processed - view.last[1]) / dt, (stats.failed - view.last[2]) / dt)
        view.last = (now, stats.processed, stats.failed)
        out[name] = stats
    return out


def sparkline(values: deque[int] | list[int]) -> str:
    """Backlog history as block characters, scaled to its own maximum."""
    top = max(values, default=0)
    if top <= 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[min(len(_SPARKS) - 1, v * (len(_SPARKS) - 1) // top)] for v in values)


def render(source: str, stats: dict[str, QueueStats], views: dict[str, QueueView]) -> RenderableType:
    """One frame: a header, then per queue its numbers and its workers (fits 80 columns)."""
    parts: list[RenderableType] = [Text.assemble(
        ("workerpool top", "bold"), f"  {source}  {time.strftime('%H:%M:%S')}  ", ("q quits", "dim"))]
    if not stats:
        parts.append(Text("no pool has published numbers on this Redis yet", style="yellow"))
    for name, s in stats.items():
        parts.append(_queue_block(name, s, views[name]))
    return Group(*parts)


def _queue_block(name: str, s: QueueStats, view: QueueView) -> RenderableType:
    done, failed = view.rates
    summary = Text.assemble(
        (f"queue {name}", "bold cyan"), "  backlog ", (str(s.backlog), "bold"), " ",
        (sparkline(view.backlog), "cyan"), f"  in flight {s.in_flight}  delayed {s.delayed}  dead ",
        (str(s.dead_lettered), "bold red" if s.dead_lettered else ""),
        f"\n  done {done:.1f}/s  failed {failed:.1f}/s  processed {s.processed}  failed {s.failed}")
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
    for column in ("role", "pid", "state", "task", "master"):
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=30)
    workers = [(m, w) for m in s.masters for w in m.workers]
    workers.sort(key=lambda mw: (mw[1].role, not mw[1].busy, mw[1].pid))
    for m, w in workers[:MAX_WORKER_ROWS]:
        age = w.task_s
        table.add_row(w.role, str(w.pid), Text("busy", "green") if w.busy else Text("idle", "dim"),
                      f"{age:.1f} s" if w.busy and age is not None else "", f"{m.host}:{m.pid}")
    counts = _role_counts(s.masters)
    footer = Text(f"  {counts}" + (f"  (+{len(workers) - MAX_WORKER_ROWS} more)"
                                   if len(workers) > MAX_WORKER_ROWS else ""), style="dim")
    unreadable = [Text(f"  skipped: {problem}", style="yellow") for problem in s.unreadable]
    return Group(Text(""), summary, table, footer, *unreadable)


def _role_counts(masters: tuple[MasterReport, ...]) -> str:
    permanent = sum(m.permanent for m in masters)
    temporary = sum(m.temporary for m in masters)
    busy = sum(m.busy for m in masters)
    limit = sum(m.max_workers for m in masters)
    return (f"masters {len(masters)}  permanent {permanent}  temporary {temporary}  busy {busy}"
            f"  max {limit}")


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys arrive one by one, Ctrl+C still interrupts); None if no tty."""
    if not sys.stdin.isatty():
        yield None
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _quit_pressed(fd: int | None, timeout: float) -> bool:
    """Wait up to `timeout` for a key; True if it was q."""
    if fd is None:
        time.sleep(timeout)  # pacing the refresh when there is no keyboard to wait on
        return False
    ready = select.select([fd], [], [], timeout)[0]
    return bool(ready) and os.read(fd, 32).lower().startswith(b"q")


def run_top(r: redis.Redis, queues: list[str], source: str, interval_s: float, once: bool) -> int:
    """Refresh in place until q or Ctrl+C (or print one frame with `once`); return the exit code."""
    views: dict[str, QueueView] = {}
    console = Console()
    if once:
        console.print(render(source, sample(r, queues or discover(r), views), views))
        return 0
    try:
        with _keys() as fd, Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                live.update(render(source, sample(r, queues or discover(r), views), views), refresh=True)
                if _quit_pressed(fd, interval_s):
                    return 0
    except KeyboardInterrupt:
        return 0
