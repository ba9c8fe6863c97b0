"""The operator against a real kube-apiserver + etcd, with the ServiceAccount's own RBAC."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from helpers import ROOT, TESTS, wait_until

from workerpool import Queue
from workerpool.spec import SpecError, parse_manifest

NS = "workerpool"  # deploy/ puts the operator and its Role in this namespace
DEPLOY = ROOT / "deploy"


class Operator:
    """`workerpool operator` in a subprocess, logged in with the ServiceAccount's token."""

    def __init__(self, apiserver: Any, tmp: Path, namespace: str = NS,
                 watch: tuple[str, ...] = ()) -> None:
        token = apiserver.service_account_token(namespace, "workerpool-operator")
        kubeconfig = apiserver.kubeconfig_for_token(token, "operator", namespace)
        tmp.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp / "operator.log"
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "WORKERPOOL_STATE_DIR": str(tmp / "state"),
               "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
        self._log = open(self.log_path, "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "workerpool", "operator",
                                      *(watch or ("-n", namespace))],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.ps = psutil.Process(self.proc.pid)

    def log(self) -> str:
        return self.log_path.read_text()

    def workers(self, pool: str, role: str | None = None) -> list[psutil.Process]:
        found = []
        for p in self.ps.children(recursive=True):
            try:
                title = " ".join(p.cmdline())
                zombie = p.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                continue
            if not zombie and f"pool={pool}" in title and "worker[" in title \
                    and (role is None or f"worker[{role}]" in title):
                found.append(p)
        return found

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def cluster(apiserver: Any) -> Any:
    """deploy/ applied as the README says (`kubectl apply -k deploy/`). No controller-manager or
    kubelet runs here, so the operator Deployment stays inert; the tests run the operator
    themselves with the ServiceAccount's token."""
    done = apiserver.kubectl("apply", "-k", str(DEPLOY))
    for kind in ("namespace/workerpool", "customresourcedefinition.apiextensions.k8s.io/workerpools",
                 "serviceaccount/workerpool-operator", "role.rbac.authorization.k8s.io/workerpool-operator",
                 "rolebinding.rbac.authorization.k8s.io/workerpool-operator",
                 "deployment.apps/workerpool-operator"):
        assert kind in done.stdout, done.stdout
    apiserver.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      "crd/workerpools.workerpool.dev")
    return apiserver


@pytest.fixture(scope="module")
def operator(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(cluster, tmp_path_factory.mktemp("operator"))
    try:
        yield op
    finally:
        code = op.stop()
        assert code == 0, op.log()[-3000:]
        assert not op.ps.is_running() or op.ps.status() == psutil.STATUS_ZOMBIE


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """The module-scoped operator outlives each test; it is checked when it stops."""
    yield


def pool_doc(name: str, redis_url: str | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"handler": "handlers:record", **spec}
    if redis_url:
        body["redis"] = {"url": redis_url}
    return {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


def apply(cluster: Any, doc: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess:
    return cluster.kubectl("apply", "--validate=strict", "-f", "-", input=yaml.safe_dump(doc),
                           check=check)


def get(cluster: Any, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "wp", name, "-n", NS, "-o", "json").stdout)


def status_is(cluster: Any, name: str, **want: int) -> bool:
    status = get(cluster, name).get("status", {})
    return all(status.get(k) == v for k, v in want.items())


def test_apply_scale_edit_delete(operator: Operator, cluster: Any, redis_url: str) -> None:
    began = time.monotonic()
    apply(cluster, pool_doc("emails", redis_url, minWorkers=3, maxWorkers=6,
                            idleTimeoutSeconds=1, prefetch=1))
    wait_until(lambda: len(operator.workers("emails", "permanent")) == 3, 30,
               what="3 permanent workers; log:\n" + operator.log()[-2000:])
    print(f"\nkubectl apply -> 3 workers running: {time.monotonic() - began:.2f} s")
    wait_until(lambda: status_is(cluster, "emails", permanentWorkers=3, temporaryWorkers=0), 15,
               what="status to show 3 permanent workers")

    q = Queue("emails", redis_url=redis_url)
    q.enqueue_many({"s": 0.05, "n": n, "tag": "k8s"} for n in range(400))
    wait_until(lambda: len(operator.workers("emails", "temporary")) == 3, 10, what="3 temporaries")
    wait_until(lambda: status_is(cluster, "emails", temporaryWorkers=3), 10, what="status temporaries")
    table = cluster.kubectl("get", "wp", "emails", "-n", NS).stdout
    assert table.split()[:12] == ["NAME", "MIN", "MAX", "PODS", "READY", "PERMANENT", "TEMPORARY",
                                  "BUSY", "BACKLOG", "PROCESSED", "FAILED", "AGE"]
    wait_until(lambda: status_is(cluster, "emails", processed=400, temporaryWorkers=0), 60,
               what="all served and temporaries gone")
    assert len(operator.workers("emails")) == 3
    events = cluster.kubectl("get", "events", "-n", NS, "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]
               if e["involvedObject"]["name"] == "emails"}
    assert {"ScaledUp", "ScaledDown"} <= reasons

    edited = time.monotonic()
    cluster.kubectl("patch", "wp", "emails", "-n", NS, "--type=merge",
                    "-p", '{"spec": {"minWorkers": 5}}')
    wait_until(lambda: len(operator.workers("emails", "permanent")) == 5, 15, what="5 permanent")
    print(f"spec edit -> new size: {time.monotonic() - edited:.2f} s")
    wait_until(lambda: status_is(cluster, "emails", permanentWorkers=5), 10, what="status 5")
    generation = get(cluster, "emails")["metadata"]["generation"]
    wait_until(lambda: get(cluster, "emails")["status"].get("observedGeneration") == generation, 10,
               what="observedGeneration to follow")

    operator.workers("emails", "permanent")[0].kill()
    wait_until(lambda: "WorkerCrashed" in cluster.kubectl("get", "events", "-n", NS).stdout, 15,
               what="a WorkerCrashed event")
    wait_until(lambda: len(operator.workers("emails", "permanent")) == 5, 15, what="a replacement")

    before = {p.pid for p in operator.workers("emails")}
    cluster.kubectl("patch", "wp", "emails", "-n", NS, "--type=merge",
                    "-p", '{"spec": {"handler": "handlers:echo"}}')
    wait_until(lambda: len(operator.workers("emails", "permanent")) == 5
               and not before & {p.pid for p in operator.workers("emails")}, 20,
               what="every worker replaced after the handler changed")
    assert q.result(q.enqueue("new handler"), timeout=10) == "new handler"

    cluster.kubectl("delete", "wp", "emails", "-n", NS, "--wait=true", "--timeout=60s")
    assert operator.workers("emails") == []
    assert "Traceback" not in operator.log()


def test_redis_url_from_a_secret_never_shows(operator: Operator, cluster: Any, redis_server: Any,
                                              r: Any) -> None:
    r.config_set("requirepass", "s3cret-pw")
    try:
        url = f"redis://:s3cret-pw@127.0.0.1:{redis_server.port}/0"
        cluster.kubectl("create", "secret", "generic", "q-redis", "-n", NS,
                        f"--from-literal=url={url}")
        doc = pool_doc("secretive", None, minWorkers=1, maxWorkers=1, queue="secretive")
        doc["spec"]["redis"] = {"urlFrom": {"secretKeyRef": {"name": "q-redis", "key": "url"}}}
        apply(cluster, doc)
        wait_until(lambda: status_is(cluster, "secretive", permanentWorkers=1), 30,
                   what="the pool to run with the Secret's URL")
        shown = json.dumps(get(cluster, "secretive")) + operator.log()
        shown += " ".join(" ".join(p.cmdline()) for p in operator.ps.children(recursive=True))
        assert "s3cret-pw" not in shown
        cluster.kubectl("delete", "wp", "secretive", "-n", NS, "--wait=true", "--timeout=60s")
    finally:
        r.config_set("requirepass", "")


def test_a_bad_url_in_a_secret_is_reported_and_retried_until_fixed(operator: Operator, cluster: Any,
                                                                   redis_url: str) -> None:
    """The Secret can be fixed without an edit of the pool: the operator keeps reading it."""
    cluster.kubectl("create", "secret", "generic", "bad-redis", "-n", NS,
                    "--from-literal=url=pw-in-secret")  # a bare password, by mistake
    doc = pool_doc("misdirected", None, minWorkers=1, maxWorkers=1, queue="misdirected")
    doc["spec"]["redis"] = {"urlFrom": {"secretKeyRef": {"name": "bad-redis", "key": "url"}}}
    apply(cluster, doc)

    def not_ready() -> dict[str, Any] | None:
        conds = get(cluster, "misdirected").get("status", {}).get("conditions", [])
        return next((c for c in conds if c["type"] == "Ready" and c["reason"] == "InvalidSpec"), None)

    cond = wait_until(not_ready, 30, what="Ready=False, InvalidSpec, naming the Secret")
    assert "'bad-redis'" in cond["message"] and "redis://" in cond["message"]
    assert operator.workers("misdirected") == []
    cluster.kubectl("delete", "secret", "bad-redis", "-n", NS)
    cluster.kubectl("create", "secret", "generic", "bad-redis", "-n", NS,
                    f"--from-literal=url={redis_url}")
    wait_until(lambda: status_is(cluster, "misdirected", permanentWorkers=1), 40,
               what="the pool to start once the Secret holds a Redis URL")
    shown = json.dumps(get(cluster, "misdirected")) + operator.log()
    assert "pw-in-secret" not in shown and "Traceback" not in operator.log()
    cluster.kubectl("delete", "wp", "misdirected", "-n", NS, "--wait=true", "--timeout=60s")


def test_unimportable_handler_is_degraded(operator: Operator, cluster: Any, redis_url: str) -> None:
    apply(cluster, pool_doc("broken", redis_url, handler="nosuchmodule:f"))

    def degraded() -> dict[str, Any] | None:
        conds = get(cluster, "broken").get("status", {}).get("conditions", [])
        return next((c for c in conds if c["type"] == "Degraded" and c["status"] == "True"), None)

    cond = wait_until(degraded, 30, what="a Degraded condition")
    assert cond["reason"] == "MasterExited" and "nosuchmodule" in cond["message"]
    cluster.kubectl("delete", "wp", "broken", "-n", NS, "--wait=true", "--timeout=60s")


def test_a_master_killed_outright_is_restarted_by_its_daemon(operator: Operator, cluster: Any,
                                                            redis_url: str) -> None:
    """The pool's daemon reports the exit, then kopf runs it again (TemporaryError with a delay)."""
    apply(cluster, pool_doc("phoenix", redis_url, minWorkers=1, maxWorkers=1))
    wait_until(lambda: len(operator.workers("phoenix")) == 1, 30, what="1 worker")
    [first] = _masters(operator, "phoenix")
    os.kill(first, signal.SIGKILL)

    def ready() -> bool:
        conds = get(cluster, "phoenix").get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    wait_until(lambda: "MasterExited" in cluster.kubectl("get", "events", "-n", NS,
                                                         "--field-selector",
                                                         "involvedObject.name=phoenix").stdout,
               15, what="a MasterExited event")
    wait_until(lambda: _masters(operator, "phoenix") not in ([], [first])
               and len(operator.workers("phoenix")) == 1, 30, what="a new master with its worker")
    wait_until(ready, 15, what="Ready again")
    cluster.kubectl("delete", "wp", "phoenix", "-n", NS, "--wait=true", "--timeout=60s")
    assert operator.workers("phoenix") == []


def _masters(operator: Operator, pool: str) -> list[int]:
    """The operator's live master processes of `pool` (their title names the pool)."""
    found = []
    for p in operator.ps.children():
        try:
            if f"master pool={pool}" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except psutil.NoSuchProcess:
            continue
    return found


BAD_SPECS = [
    ({"handler": "m:f", "minWorkers": 5, "maxWorkers": 2}, "spec.minWorkers must not exceed"),
    ({"handler": "m:f", "minWorkers": -1}, "spec.minWorkers"),
    ({"handler": "no-colon"}, "spec.handler"),
    ({"handler": "m:f", "replicas": 3}, "replicas"),
    ({"handler": "m:f", "idleTimeoutSeconds": "5"}, "spec.idleTimeoutSeconds"),
    ({"handler": "m:f",
      "redis": {"url": "redis://x", "urlFrom": {"secretKeyRef": {"name": "a", "key": "b"}}}},
     "not both"),
    ({"minWorkers": 1}, "spec.handler"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_api_server_and_local_validator_refuse_the_same(cluster: Any, spec: dict[str, Any],
                                                        message: str) -> None:
    doc = {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
           "metadata": {"name": "bad", "namespace": NS}, "spec": spec}
    done = apply(cluster, doc, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    with pytest.raises(SpecError):
        parse_manifest({k: v for k, v in doc.items()} | {"metadata": {"name": "bad"}})


def test_good_specs_pass_both(cluster: Any) -> None:
    good = [{"handler": "m:f"}, {"handler": "a.b:c", "minWorkers": 0, "maxWorkers": 1},
            {"handler": "m:f", "redis": {"url": "rediss://h:1/2"}, "taskTimeoutSeconds": 0}]
    for i, spec in enumerate(good):
        doc = {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
               "metadata": {"name": f"good{i}", "namespace": "default"}, "spec": spec}
        cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                        input=yaml.safe_dump(doc))
        parse_manifest(doc | {"metadata": {"name": f"good{i}"}})


def test_operator_pod_passes_restricted_pod_security(cluster: Any) -> None:
    dep = yaml.safe_load((DEPLOY / "operator.yaml").read_text())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "psa-check", "namespace": NS},
           "spec": dep["spec"]["template"]["spec"]}
    cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod))
    weaker = json.loads(json.dumps(pod))
    del weaker["spec"]["containers"][0]["securityContext"]["capabilities"]
    refused = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(weaker),
                              check=False)
    assert refused.returncode != 0 and "restricted" in refused.stderr  # the check is real


def test_operator_stop_drains_and_kill9_loses_nothing(cluster: Any, redis_url: str, r: Any,
                                                      tmp_path: Path) -> None:
    """SIGTERM drains the pools; kill -9 takes masters and workers with it, nothing is lost."""
    ns = cluster.create_namespace("lifecycle")
    rbac = (DEPLOY / "rbac.yaml").read_text().replace("namespace: workerpool", f"namespace: {ns}")
    cluster.kubectl("apply", "-f", "-", input=rbac)
    doc = pool_doc("life", redis_url, minWorkers=2, maxWorkers=2, prefetch=1)
    doc["metadata"]["namespace"] = ns
    q = Queue("life", redis_url=redis_url)

    first = Operator(cluster, tmp_path / "1", ns)
    apply(cluster, doc)
    wait_until(lambda: len(first.workers("life")) == 2, 30, what="2 workers")
    q.enqueue({"s": 1.5, "n": 1, "tag": "life"})
    wait_until(lambda: r.llen("started:life") == 1, 10, what="the task to start")
    assert first.stop() == 0  # SIGTERM, as Kubernetes sends it: the pool drains first
    assert [json.loads(x)["n"] for x in r.lrange("served:life", 0, -1)] == [1]

    second = Operator(cluster, tmp_path / "2", ns)
    wait_until(lambda: len(second.workers("life")) == 2, 30, what="the pool resumed")
    q.enqueue({"s": 2, "n": 2, "tag": "life"})
    wait_until(lambda: r.llen("started:life") == 2, 10, what="the second task to start")
    tree = second.ps.children(recursive=True)
    second.proc.kill()
    assert second.stop() == -signal.SIGKILL
    wait_until(lambda: not any(_alive(p) for p in tree), 3, what="masters and workers to die too")

    third = Operator(cluster, tmp_path / "3", ns)
    try:
        wait_until(lambda: sorted(json.loads(x)["n"] for x in r.lrange("served:life", 0, -1)) == [1, 2],
                   30, what="the task in hand at the kill to be served by the next operator")
        cluster.kubectl("delete", "wp", "life", "-n", ns, "--wait=true", "--timeout=60s")
    finally:
        third.stop()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_example_applies(cluster: Any) -> None:
    done = cluster.kubectl("apply", "--dry-run=server", "--validate=strict",
                           "-f", str(DEPLOY / "examples" / "workerpool.yaml"))
    assert "workerpool.workerpool.dev/emails created (server dry run)" in done.stdout


def test_all_namespaces_mode_with_the_cluster_role(cluster: Any, redis_url: str, tmp_path: Path) -> None:
    """`--all-namespaces` with deploy/cluster-wide/rbac.yaml serves a pool in any namespace."""
    cluster.kubectl("apply", "-f", str(DEPLOY / "cluster-wide" / "rbac.yaml"))
    ns = cluster.create_namespace("anywhere")
    op = Operator(cluster, tmp_path, NS, watch=("--all-namespaces",))
    try:
        doc = pool_doc("wide", redis_url, minWorkers=2, maxWorkers=2)
        doc["metadata"]["namespace"] = ns
        apply(cluster, doc)
        wait_until(lambda: len(op.workers("wide")) == 2, 30, what="2 workers; log:\n" + op.log()[-2000:])
        cluster.kubectl("delete", "wp", "wide", "-n", ns, "--wait=true", "--timeout=60s")
        assert op.workers("wide") == []
    finally:
        assert op.stop() == 0
