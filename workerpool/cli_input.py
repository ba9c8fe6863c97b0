"""What the `workerpool` command accepts: each refusal is one line naming the argument, the
value (shortened, passwords hidden) and what is allowed — never a traceback."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import IO, Any

import click
import redis

from .connection import parse_redis_url
from .errors import SpecError
from .queue import queue_name_problem
from .spec import QUEUE_MAX_LENGTH, redact_url


class Refused(click.UsageError):
    """Bad input: one line naming the argument, the value and what is allowed (exit code 2)."""

    def __init__(self, argument: str, value: Any, allowed: str, problem: str = "is not allowed") -> None:
        super().__init__(f"{argument}: {_shown(value)} {problem}; expected {allowed}")


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    text = text if len(text) <= 80 else text[:77] + "..."
    return repr(text)


def check_queue(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if queue_name_problem(value):
        raise Refused("--queue", value, f"1 to {QUEUE_MAX_LENGTH} characters of UTF-8 text "
                      "without spaces or control characters (the Redis list of the queue)")
    return value


def check_redis_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    allowed = ("a URL redis://[:password@]host[:port][/db], rediss://..., unix:///path, "
               "redis+sentinel://HOST:PORT,.../SERVICE[/db] or redis+cluster://HOST:PORT,...")
    if not _is_utf8(value):
        raise Refused("--redis-url", redact_url(value), allowed)
    try:
        if parse_redis_url("--redis-url", value).kind != "server":
            return value  # the Sentinel and Cluster forms are checked whole by the parser
    except SpecError as e:
        raise Refused("--redis-url", redact_url(value), e.allowed) from None
    try:
        redis.connection.parse_url(value)  # type: ignore[no-untyped-call]  # untyped in redis-py
        db = urllib.parse.urlparse(value).path.strip("/")
        if value.startswith("redis") and db and not db.isdigit():  # redis-py would ignore it
            raise ValueError(f"the database {db!r} is not a number")
    except ValueError as e:
        raise Refused("--redis-url", redact_url(value), f"{allowed} ({redact_url(str(e))})") from None
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a lone surrogate: argv bytes that were not UTF-8
        return False


def parse_payloads(payloads: tuple[str, ...], file_: IO[bytes] | None) -> Iterator[Any]:
    sources: list[tuple[str, str | bytes]] = [(f"PAYLOAD #{i}", text) for i, text in enumerate(payloads, 1)]
    if file_ is not None:
        sources += [(f"--file {file_.name} line {n}", line) for n, line in enumerate(file_, 1)
                    if line.strip()]
    for where, raw in sources:
        yield _payload(where, raw)


def _payload(where: str, raw: str | bytes) -> Any:
    """One payload: strict JSON (no NaN or Infinity) in valid UTF-8, that JSON can write back."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        text.encode("utf-8")
    except UnicodeError:
        shown = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        raise Refused(where, shown.strip(), "a JSON text in UTF-8", problem="is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError) as e:
        reason = "nested too deep" if isinstance(e, RecursionError) else str(e)
        raise Refused(where, text.strip(), "a JSON text; a string payload needs quotes: '\"text\"'",
                      problem=f"is not valid JSON ({reason})") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
