"""Read WorkerPool manifests from a YAML file (one or more documents)."""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import SpecError
from .spec import PoolSpec, parse_manifest


def load_file(path: str | Path) -> list[PoolSpec]:
    """Every WorkerPool in the file, validated (where each runs is the runner's to resolve)."""
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as e:
        raise SpecError(str(path), None, f"cannot read the file: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SpecError(str(path), None, f"not valid YAML: {e}") from None
    if not docs:
        raise SpecError(str(path), None, "the file holds no WorkerPool manifest")
    specs = [parse_manifest(doc, where=f"{path.name}[{i}]" if len(docs) > 1 else path.name)
             for i, doc in enumerate(docs)]
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise SpecError(f"{path.name}: metadata.name", name, "each WorkerPool needs its own name")
    return specs
