"""W3C trace context for tasks: a producer's `traceparent` travels in the task's envelope.

A handler reads it with `workerpool.current_traceparent()`. With the `opentelemetry` extra
installed (and a TracerProvider set up by the application, e.g. in the handler's module),
each run of a task that carries a traceparent is a CONSUMER span, child of the producer's.
Tasks without one take the plain path: no context variable, no span.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable
from typing import Any

from .errors import PayloadError

# version-traceid-parentid-flags, lower-case hex (W3C Trace Context, level 1); version ff is invalid
_TRACEPARENT = re.compile(r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("workerpool_traceparent",
                                                                       default=None)


def check(traceparent: str) -> str:
    """The traceparent if it is a valid W3C one; else PayloadError naming it."""
    if not isinstance(traceparent, str) or not _TRACEPARENT.match(traceparent):
        raise PayloadError(f"traceparent: {traceparent!r} is not a W3C traceparent "
                           "('00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>', lower case)")
    return traceparent


def current_traceparent() -> str | None:
    """The traceparent the running task was enqueued with (None outside a task, or if none)."""
    return _current.get()


@functools.cache
def opentelemetry() -> tuple[Any, Any] | None:
    """(propagate, trace) from opentelemetry-api if installed; the master calls it before forking."""
    try:
        from opentelemetry import propagate, trace
    except ImportError:
        return None
    return propagate, trace


def call(handler: Callable[[Any], Any], payload: Any, traceparent: str, task_id: str | None,
         queue: str) -> Any:
    """handler(payload) with the task's trace context: readable, and a span if OpenTelemetry is there."""
    token = _current.set(traceparent)
    try:
        otel = opentelemetry()
        if otel is None:
            return handler(payload)
        propagate, trace = otel
        parent = propagate.extract({"traceparent": traceparent})
        attributes = {"messaging.system": "workerpool", "messaging.destination.name": queue,
                      "messaging.operation.type": "process", "messaging.message.id": task_id or ""}
        with trace.get_tracer("workerpool").start_as_current_span(
                f"{queue} process", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes):
            return handler(payload)
    finally:
        _current.reset(token)
