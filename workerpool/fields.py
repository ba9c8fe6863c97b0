"""Field tables and the checks behind them: one table feeds the validator and the CRD schema.

A manifest section (spec, spec.pods) is a tuple of `Field`s for its scalars and of
`ObjectField`s for the Kubernetes objects it passes through unchanged (resources, tolerations,
...). `check_scalar` and `check_object` refuse a value with the field's path, the value and what
is allowed; `schema_of` turns the same table into the CRD's OpenAPI properties.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from .errors import SpecError

#: a scalar's JSON type, as the CRD's OpenAPI schema names it
ScalarKind = Literal["string", "integer", "number"]
#: a pass-through field: one Kubernetes object, a list of them, or a map of strings
ObjectKind = Literal["object", "array", "map"]


@dataclass(frozen=True, slots=True)
class Field:
    """One scalar field: its manifest name, type, default and bounds."""

    name: str
    attr: str
    kind: ScalarKind
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    #: a master applies a change on SIGHUP without replacing its workers (they never read it)
    live: bool = False


@dataclass(frozen=True, slots=True)
class ObjectField:
    """A Kubernetes object passed through to a pod template; the API server validates its inside."""

    name: str
    attr: str
    kind: ObjectKind
    description: str = ""


def check_scalar(path: str, f: Field, raw: Any) -> Any:
    """The value of scalar field `f` at `path`, or SpecError naming what is allowed."""
    if f.kind == "string":
        if not isinstance(raw, str) or not raw:
            raise SpecError(path, raw, "a non-empty string")
        return raw
    ok_types: tuple[type, ...] = (int,) if f.kind == "integer" else (int, float)
    if isinstance(raw, bool) or not isinstance(raw, ok_types) or not math.isfinite(cast(float, raw)):
        raise SpecError(path, raw, f"an {f.kind} from {num(f.minimum)} to {num(f.maximum)}"
                        if f.kind == "integer" else
                        f"a number from {num(f.minimum)} to {num(f.maximum)}")
    number = cast(float, raw)
    if (f.minimum is not None and number < f.minimum) or (f.maximum is not None and number > f.maximum):
        raise SpecError(path, raw, f"must be from {num(f.minimum)} to {num(f.maximum)}")
    return float(number) if f.kind == "number" else raw


def check_object(path: str, f: ObjectField, raw: Any) -> Any:
    """The value of pass-through field `f` at `path`, checked for its outer shape only."""
    if f.kind == "object" and not isinstance(raw, Mapping):
        raise SpecError(path, short(raw), "a mapping (a Kubernetes object)")
    if f.kind == "map" and not (isinstance(raw, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items())):
        raise SpecError(path, short(raw), "a mapping of strings to strings")
    if f.kind == "array" and not (isinstance(raw, list) and all(isinstance(x, Mapping) for x in raw)):
        raise SpecError(path, short(raw), "a list of mappings (Kubernetes objects)")
    return raw


def no_unknown(m: Mapping[str, Any], allowed: tuple[str, ...] | Mapping[str, Any], path: str) -> None:
    """Refuse the first key of `m` that is not in `allowed`, listing what is."""
    for key in m:
        if key not in allowed:
            raise SpecError(f"{path}{key}", m[key] if not isinstance(m[key], Mapping) else "{...}",
                            "unknown field; allowed: " + ", ".join(sorted(allowed)))


def schema_of(fields: tuple[Field | ObjectField, ...]) -> dict[str, Any]:
    """The OpenAPI properties of a field table, for the CRD."""
    props: dict[str, Any] = {}
    for f in fields:
        if isinstance(f, ObjectField):
            props[f.name] = _object_schema(f)
            continue
        p: dict[str, Any] = {"type": f.kind, "description": f.description}
        if f.default is not None:
            p["default"] = f.default
        if f.minimum is not None:
            p["minimum"] = f.minimum
        if f.maximum is not None:
            p["maximum"] = f.maximum
        props[f.name] = p
    return props


def _object_schema(f: ObjectField) -> dict[str, Any]:
    opaque = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if f.kind == "map":
        return {"type": "object", "additionalProperties": {"type": "string"}, "description": f.description}
    if f.kind == "array":
        return {"type": "array", "items": opaque, "description": f.description}
    return {**opaque, "description": f.description}


def num(x: float | None) -> str:
    if x is None:
        return "any"
    return str(int(x)) if float(x).is_integer() else str(x)


def short(value: Any) -> Any:
    """A value short enough for a one-line error."""
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."
