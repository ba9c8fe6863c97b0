"""Handlers for the trace-context tests (imported by workers as `tracing_handlers:NAME`).

When SPANS_FILE is set and opentelemetry-sdk is installed, importing this module (in the
master, before any fork) installs a TracerProvider that appends each finished span to that
file as a JSON line, so the test can read spans made in worker processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import redis

import workerpool


def _install_exporter(path: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(path, "a") as f:  # opened per export: safe in forked workers
                for span in spans:
                    f.write(json.dumps({
                        "name": span.name, "kind": span.kind.name,
                        "trace_id": f"{span.context.trace_id:032x}",
                        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                        "attributes": dict(span.attributes or {})}) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)


if os.environ.get("SPANS_FILE"):
    _install_exporter(os.environ["SPANS_FILE"])


def traced(payload: Any) -> Any:
    """Fail the first attempt if payload['fail_first'], then return the task's traceparent."""
    if isinstance(payload, dict) and payload.get("fail_first"):
        tries = redis.Redis.from_url(os.environ["REDIS_URL"]).incr(f"tries:{payload['fail_first']}")
        if tries == 1:
            raise RuntimeError("first attempt fails")
    return workerpool.current_traceparent()
