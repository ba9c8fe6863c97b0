"""The `workerpool` command: parse, build the config, call one function."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from . import logs
from .cli_input import Refused, check_queue, check_redis_url, parse_payloads
from .connection import connect
from .errors import WorkerPoolError, exception_text
from .queue import Queue
from .redis_errors import REDIS_ERRORS
from .spec import redact_url

DEFAULT_REDIS_URL = "redis://127.0.0.1:6390/0"  # where `workerpool run` puts its embedded Redis
CLIENT_SOCKET_TIMEOUT_S = 10.0  # a client command waits this long for Redis before giving up


_redis_url = click.option("--redis-url", envvar="REDIS_URL", default=None, show_envvar=True,
                          callback=check_redis_url, help="Redis URL (overrides spec.redis.url).")
_queue = click.option("--queue", "-q", required=True, callback=check_queue,
                      help="Queue (Redis list key).")
_log_options = [
    click.option("--log-level", default="INFO", show_default=True,
                 type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)),
    click.option("--log-format", default="text", show_default=True,
                 type=click.Choice(["text", "json"])),
]


def _with_logs(f: Any) -> Any:
    for option in reversed(_log_options):
        f = option(f)
    return f


@click.group()
@click.version_option(package_name="redis-workerpool")  # the distribution name (PyPI)
def cli() -> None:
    """A self-scaling pool of worker processes for a Redis queue."""


@cli.command()
@click.argument("pool_file", type=click.Path(dir_okay=False))
@_redis_url
@click.option("--data-dir", default=".workerpool/redis", show_default=True,
              help="Where the embedded Redis keeps its data (used when no URL is given).")
@click.option("--die-with-parent", type=int, default=None, hidden=True,
              help="Exit at once if process PID (the operator) dies.")
@click.option("--metrics-address", envvar="WORKERPOOL_METRICS_ADDRESS", default=None, show_envvar=True,
              help="Serve Prometheus metrics at http://ADDRESS/metrics; ADDRESS is PORT, :PORT or "
                   "HOST:PORT. Off unless given.")
@_with_logs
def run(pool_file: str, redis_url: str | None, data_dir: str, die_with_parent: int | None,
        metrics_address: str | None, log_level: str, log_format: str) -> None:
    """Run the master for the WorkerPool manifest(s) in POOL_FILE, in the foreground."""
    from .process import tie_to_parent
    from .runner import run_local

    if die_with_parent is not None:
        tie_to_parent(die_with_parent)
    logs.setup(log_level, log_format)
    sys.path.insert(0, os.getcwd())  # handlers are imported like `python -m` would find them
    _exit_on_error(lambda: sys.exit(run_local(pool_file, redis_url, data_dir, metrics_address)))


@cli.command()
@click.option("--tasks", default=200, show_default=True, type=click.IntRange(1, 100_000),
              help="Tasks in the burst.")
@click.option("--data-dir", default=".workerpool/demo-redis", show_default=True)
@_with_logs
def demo(tasks: int, data_dir: str, log_level: str, log_format: str) -> None:
    """Watch a pool of 3 permanent workers scale to 10 for a burst, then back, then stop."""
    from .demo import run_demo

    logs.setup(log_level, log_format)
    _exit_on_error(lambda: sys.exit(run_demo(tasks, data_dir)))


@cli.command()
@_queue
@_redis_url
@click.option("--file", "-f", "file_", type=click.File("rb"), default=None,
              help="JSON lines, one payload per line ('-' for stdin).")
@click.argument("payloads", nargs=-1)
def enqueue(queue: str, redis_url: str | None, file_: Any, payloads: tuple[str, ...]) -> None:
    """Push each PAYLOAD (a JSON text) as a task; print one task id per line."""
    values = list(parse_payloads(payloads, file_))
    if not values:
        raise Refused("PAYLOAD", "", "at least one PAYLOAD (a JSON text) or --file",
                      problem="(none given)")
    q = _queue_of(queue, redis_url)
    ids = _redis_call(redis_url, lambda: q.enqueue_many(values))
    click.echo("\n".join(ids))


@cli.command()
@_queue
@_redis_url
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(queue: str, redis_url: str | None, as_json: bool) -> None:
    """Backlog, in-flight, dead-lettered, processed and failed counts, and the live workers."""
    q = _queue_of(queue, redis_url)
    report = _redis_call(redis_url, q.read_stats)
    data = report.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key in ("queue", "backlog", "in_flight", "delayed", "dead_lettered", "processed",
                "failed", "retried"):
        click.echo(f"{key:14} {data[key]}")
    for m in report.masters:
        click.echo(f"master {m.host}:{m.pid} pool={m.pool} permanent={m.permanent} "
                   f"temporary={m.temporary} busy={m.busy}")
        for w in m.workers:
            click.echo(f"  worker[{w.role}] pid={w.pid} {'busy' if w.busy else 'idle'}")
    for problem in report.unreadable:
        click.echo(f"skipped: {problem}", err=True)


@cli.command()
@click.option("--queue", "-q", "queues", multiple=True,
              help="Queue to show (repeatable); default: every pool on this Redis.")
@_redis_url
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit (no live screen).")
def top(queues: tuple[str, ...], redis_url: str | None, interval: float, once: bool) -> None:
    """A live view of the pools on a Redis: workers, backlog, rates, dead letters (q quits)."""
    from .top import run_top

    url = redis_url or DEFAULT_REDIS_URL
    client = _redis_call(redis_url, lambda: connect(url, socket_timeout=CLIENT_SOCKET_TIMEOUT_S))
    code = _redis_call(redis_url, lambda: run_top(client, list(queues), redact_url(url), interval, once))
    sys.exit(code)


@cli.group()
def dead() -> None:
    """Inspect or act on dead-lettered tasks."""


@dead.command("list")
@_queue
@_redis_url
def dead_list(queue: str, redis_url: str | None) -> None:
    """One dead task per line: id, attempts, last error."""
    q = _queue_of(queue, redis_url)
    for entry in _redis_call(redis_url, q.dead_letters):
        fields = (entry.get("id") or "-", f"attempts={entry.get('attempts')}", entry.get("error"))
        click.echo("\t".join(_one_line(str(f)) for f in fields))


@dead.command("requeue")
@_queue
@_redis_url
def dead_requeue(queue: str, redis_url: str | None) -> None:
    """Send every dead task back to the queue with its attempts reset."""
    q = _queue_of(queue, redis_url)
    click.echo(f"requeued {_redis_call(redis_url, q.requeue_dead)}")


@dead.command("purge")
@_queue
@_redis_url
def dead_purge(queue: str, redis_url: str | None) -> None:
    """Delete every dead task."""
    q = _queue_of(queue, redis_url)
    click.echo(f"purged {_redis_call(redis_url, q.purge_dead)}")


@cli.command("operator", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def operator_cmd(args: tuple[str, ...]) -> None:
    """Run the Kubernetes operator (see README)."""
    try:
        from .operator.main import main as operator_main
    except ImportError as e:
        raise click.ClickException(f"the operator needs `pip install 'workerpool[operator]'` ({e})") from None
    sys.exit(operator_main(list(args)))


def _one_line(text: str) -> str:
    """Text for one field of a one-line record: control characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode()
                   for c in text)


def _queue_of(queue: str, redis_url: str | None) -> Queue:
    # a Cluster client connects as it is made: its "no node reachable" is one line too
    return Queue(queue, client=_redis_call(redis_url, lambda: connect(
        redis_url or DEFAULT_REDIS_URL, socket_timeout=CLIENT_SOCKET_TIMEOUT_S)))


def _redis_call(redis_url: str | None, fn: Any) -> Any:
    try:
        return fn()
    except REDIS_ERRORS as e:
        shown = redact_url(redis_url or DEFAULT_REDIS_URL)
        # redis-py appends the whole Sentinel client's repr to "No master found for 'svc'"
        text = str(e).split(" : <redis.", 1)[0]
        raise click.ClickException(f"Redis at {shown}: {text}") from None


def _exit_on_error(fn: Any) -> None:
    try:
        fn()
    except WorkerPoolError as e:
        raise click.ClickException(str(e)) from None


def main() -> None:
    """The console script: every error is one line on stderr, never a traceback."""
    try:
        code = cli.main(prog_name="workerpool", standalone_mode=False)
    except click.ClickException as e:
        click.echo(f"Error: {_one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except Exception as e:  # the last resort: a bug of ours, still one line
        click.echo(f"Error: unexpected {_one_line(exception_text(e))}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
