"""The operator role: a kopf operator that runs one master per WorkerPool (needs kopf).

Only `crd` is importable without kopf; `handlers` and `main` need `workerpool[operator]`.
The core (`workerpool.*` outside this package) never imports from here.
"""
