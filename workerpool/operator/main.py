"""`workerpool operator`: run the kopf operator for WorkerPools."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click
import kopf

from .. import logs
from ..errors import SpecError
from .kubeapi import own_namespace
from .masters import Masters


@click.command("workerpool operator")
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Namespace(s) to watch (default: the pod's own, or 'default').")
@click.option("--all-namespaces", "-A", is_flag=True, help="Watch every namespace (ClusterRole).")
@click.option("--liveness", "liveness", default=None,
              help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option("--log-format", default="text", type=click.Choice(["text", "json"]))
@click.option("--metrics-address", envvar="WORKERPOOL_METRICS_ADDRESS", default=None,
              help="Serve every pool's metrics, merged, at http://ADDRESS/metrics ([HOST:]PORT).")
@click.option("--state-dir", envvar="WORKERPOOL_STATE_DIR", default="/tmp/workerpool",
              show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the masters' manifests and metrics sockets live (env WORKERPOOL_STATE_DIR).")
def operator(namespaces: tuple[str, ...], all_namespaces: bool, liveness: str | None,
             log_format: str, metrics_address: str | None, state_dir: Path) -> None:
    """Watch WorkerPools and run one master per pool in this process's pod."""
    logs.setup("INFO", log_format)
    from . import handlers  # noqa: F401  (registers the handlers with kopf)

    if all_namespaces and namespaces:
        raise click.UsageError("give --namespace or --all-namespaces, not both")
    # built here, at the boundary, and handed to every handler in kopf's memo: the metrics
    # server needs the registry before kopf starts, and a port it cannot bind is a usage error
    masters = Masters(state_dir)
    if metrics_address:
        from .metrics import serve

        try:
            serve(metrics_address, masters.state_dir, masters.running)
        except SpecError as e:
            raise click.BadParameter(str(e)) from None
        masters.metrics = True
    from .readiness import Watched

    watched = Watched(tuple(namespaces) or (() if all_namespaces else (own_namespace() or "default",)),
                      all_namespaces)
    kopf.configure(verbose=False)
    kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=list(watched.namespaces),
             liveness_endpoint=liveness, identity=identity(),  # type: ignore[arg-type]
             memo=kopf.Memo(watched=watched, masters=masters))


def identity() -> str:
    """Who this operator is to kopf: $POD_ID (the Deployment sets the pod's name), else the host.

    Without it kopf calls getpass.getuser(), which raises KeyError for a uid with no passwd
    entry, as in the image (uid 10001) or under OpenShift's arbitrary uids, and Kubernetes
    sets neither USER nor LOGNAME.
    """
    return os.environ.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}"


def main(args: list[str]) -> int:
    operator.main(args=args, prog_name="workerpool operator", standalone_mode=True)
    return 0
