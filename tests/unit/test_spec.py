"""Manifest validation: defaults, and every refusal names the field, the value, what is allowed."""

from __future__ import annotations

import copy

import pytest
from helpers import manifest
from hypothesis import given
from hypothesis import strategies as st

from workerpool.errors import SpecError
from workerpool.spec import (
    FIELDS,
    LIVE_FIELDS,
    POD_FIELDS,
    PodsSpec,
    PoolSpec,
    openapi_schema,
    parse_manifest,
    redact_url,
)

GOOD = manifest("emails", handler="myapp.tasks:send_email")


def test_defaults():
    spec = parse_manifest(GOOD)
    assert spec == PoolSpec(name="emails", handler="myapp.tasks:send_email", queue="emails")
    assert (spec.min_workers, spec.max_workers, spec.idle_timeout_s, spec.max_retries) == (1, 4, 10.0, 3)


def test_the_issue_example_parses():
    doc = manifest("emails", handler="myapp.tasks:send_email", errorHandler="myapp.tasks:report",
                   queue="emails", redis={"url": "redis://localhost:6379/0"}, minWorkers=3,
                   maxWorkers=10, idleTimeoutSeconds=5, maxRetries=3)
    spec = parse_manifest(doc)
    assert (spec.min_workers, spec.max_workers, spec.error_handler) == (3, 10, "myapp.tasks:report")


def bad(path: str, value):
    doc = copy.deepcopy(GOOD)
    target = doc
    *parents, last = path.split(".")
    for p in parents:
        target = target.setdefault(p, {})
    target[last] = value
    return doc


@pytest.mark.parametrize(("path", "value", "field", "allowed"), [
    ("spec.minWorkers", -1, "spec.minWorkers", "from 0 to 1000"),
    ("spec.minWorkers", 5, "spec.minWorkers", "must not exceed spec.maxWorkers (4)"),
    ("spec.maxWorkers", 0, "spec.maxWorkers", "from 1 to 1000"),
    ("spec.maxWorkers", "10", "spec.maxWorkers", "an integer"),
    ("spec.maxWorkers", True, "spec.maxWorkers", "an integer"),
    ("spec.minWorkers", 1.5, "spec.minWorkers", "an integer"),
    ("spec.idleTimeoutSeconds", -5, "spec.idleTimeoutSeconds", "from 0.1 to 86400"),
    ("spec.idleTimeoutSeconds", float("nan"), "spec.idleTimeoutSeconds", "a number"),
    ("spec.handler", "no_colon", "spec.handler", "'module:function'"),
    ("spec.handler", 3, "spec.handler", "a non-empty string"),
    ("spec.errorHandler", "a:b:c", "spec.errorHandler", "'module:function'"),
    ("spec.workers", 3, "spec.workers", "unknown field"),
    ("spec.redis.url", "http://x", "spec.redis.url", "redis://"),
    ("spec.redis.port", 1, "spec.redis.port", "unknown field"),
    ("spec.redis.urlFrom", {"secretKeyRef": {"name": "s"}}, "spec.redis.urlFrom.secretKeyRef.key",
     "a non-empty string"),
    ("spec.queue", "has space", "spec.queue", "without spaces"),
    ("spec.retryDelaySeconds", 500, "spec.retryDelaySeconds", "must not exceed"),
    ("metadata.name", "Bad_Name", "metadata.name", "DNS-1123"),
    ("apiVersion", "v1", "apiVersion", "workerpool.dev/v1alpha1"),
    ("kind", "Deployment", "kind", "'WorkerPool'"),
    ("extra", 1, "extra", "unknown field"),
    ("spec.pods", 3, "spec.pods", "a mapping such as {min: 1, max: 10}"),
    ("spec.pods.min", -1, "spec.pods.min", "from 0 to 1000"),
    ("spec.pods.max", 0, "spec.pods.max", "from 1 to 1000"),
    ("spec.pods.replicas", 3, "spec.pods.replicas", "unknown field; allowed: affinity, cooldownSeconds"),
    ("spec.pods.cooldownSeconds", "1m", "spec.pods.cooldownSeconds", "a number from 0 to 86400"),
    ("spec.pods.nodeSelector", {"disk": 1}, "spec.pods.nodeSelector", "a mapping of strings to strings"),
    ("spec.pods.tolerations", {"key": "x"}, "spec.pods.tolerations", "a list of mappings"),
    ("spec.pods.resources", "1Gi", "spec.pods.resources", "a mapping (a Kubernetes object)"),
    ("spec.pods.image", "", "spec.pods.image", "a non-empty string"),
])
def test_refusals_name_field_value_and_rule(path, value, field, allowed):
    with pytest.raises(SpecError) as e:
        parse_manifest(bad(path, value))
    assert e.value.field == field
    assert allowed in str(e.value)
    if not isinstance(value, dict):
        assert repr(value) in str(e.value)  # the value is named


def test_pods_defaults_and_cross_check():
    spec = parse_manifest(bad("spec.pods", {"max": 3}))
    assert spec.pods is not None
    assert (spec.pods.min_pods, spec.pods.max_pods, spec.pods.stabilization_s, spec.pods.cooldown_s) == \
        (1, 3, 2.0, 60.0)
    assert parse_manifest(GOOD).pods is None
    with pytest.raises(SpecError, match=r"spec\.pods\.min: 4 is invalid: must not exceed spec\.pods\.max"):
        parse_manifest(bad("spec.pods", {"min": 4, "max": 3}))


def test_missing_handler():
    with pytest.raises(SpecError, match=r"spec\.handler: None is invalid: required"):
        parse_manifest(manifest("x"))


def test_password_never_shown():
    doc = bad("spec.redis.url", "redis://:hunter2@localhost:6379/0")
    spec = parse_manifest(doc)
    assert "hunter2" not in repr(spec)
    assert redact_url("redis://user:hunter2@h:1/0") == "redis://user:***@h:1/0"
    with pytest.raises(SpecError) as e:
        parse_manifest(bad("spec.redis.url", "http://:hunter2@h"))
    assert "hunter2" not in str(e.value)


def test_schema_is_generated_from_fields():
    schema = openapi_schema()
    assert set(schema["properties"]) == {f.name for f in FIELDS} | {"pods"}
    assert schema["properties"]["minWorkers"]["default"] == 1
    assert set(schema["properties"]["pods"]["properties"]) == {f.name for f in POD_FIELDS}


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True), st.text(max_size=20))


@given(st.dictionaries(st.sampled_from([f.name for f in FIELDS] + ["redis", "bogus"]), scalars))
def test_any_spec_is_accepted_or_refused_with_a_spec_error(spec):
    try:
        parsed = parse_manifest(manifest("p", **spec))
    except SpecError as e:
        assert e.field.startswith(("spec.", "metadata."))
        return
    assert 0 <= parsed.min_workers <= parsed.max_workers


def test_readme_documents_every_field():
    from helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    for f in FIELDS:
        assert f"| `{f.name}` |" in readme, f"README's field table lacks {f.name}"


def test_a_spec_built_in_code_is_checked_across_fields_too():
    with pytest.raises(SpecError, match=r"^spec\.minWorkers: .*must not exceed spec\.maxWorkers \(1\)"):
        PoolSpec(name="p", handler="m:f", queue="p", min_workers=9, max_workers=1)
    with pytest.raises(SpecError, match=r"^spec\.pods\.min: "):
        PodsSpec(min_pods=3, max_pods=2)


def test_defaults_are_stated_once_in_the_field_table():
    built = PoolSpec(name="p", handler="m:f", queue="p")
    for f in FIELDS:
        if f.default is not None:
            assert getattr(built, f.attr) == f.default, f.name
    assert {"min_workers", "max_workers", "scale_up_backlog"} == LIVE_FIELDS
