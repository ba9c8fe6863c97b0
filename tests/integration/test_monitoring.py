"""What deploy/ ships for monitoring: the rules pass promtool (and fire), the dashboard's
queries name metrics a master really exports, the kustomize components build."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, free_port, manifest, wait_until
from metrics_helpers import need, scrape
from prometheus_client.parser import text_string_to_metric_families

from workerpool import Queue

MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "alerts.rules.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "components" / "prometheus-operator" / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
_NAMES = re.compile(r"\b(?:workerpool|process)_[a-z0-9_]+\b|\bup\b(?=\{)")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("promtool"), *args], capture_output=True, text=True, timeout=60)


def test_rules_file_and_prometheus_rule_pass_promtool_and_agree(tmp_path: Path):
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())  # one set of rules, two packagings
    as_file = tmp_path / "from-prometheusrule.yml"
    as_file.write_text(yaml.safe_dump(rule["spec"]))
    for path in (RULES, as_file):
        check = _promtool("check", "rules", str(path))
        assert check.returncode == 0 and "SUCCESS: 6 rules found" in check.stdout, check


def test_alerts_fire_on_the_situations_they_describe(tmp_path: Path):
    """promtool's rule unit tests: each alert fires on a synthetic series, and only then."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")  # texts, not conditions: promtool would compare them verbatim
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    pool = 'pool="p",queue="p"'
    tests = {"rule_files": [str(tmp_path / "rules.yml")], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": f"workerpool_oldest_task_age_seconds{{{pool}}}", "values": "0 400x10"},
            {"series": f"workerpool_redis_up{{{pool}}}", "values": "1 0x5"},
            {"series": f"workerpool_crash_loop_backoff{{{pool}}}", "values": "0 1x10"},
            {"series": f'workerpool_tasks_total{{{pool},role="permanent",outcome="dead_lettered"}}',
             "values": "0+1x20"},
            {"series": f'workerpool_workers{{{pool},role="temporary",state="busy"}}', "values": "4x40"},
            {"series": f"workerpool_max_workers{{{pool}}}", "values": "4x40"},
            {"series": f"workerpool_backlog{{{pool}}}", "values": "9x40"},
            {"series": 'up{job="workerpool",instance="m:9464"}', "values": "1 0x5"},
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "WorkerpoolOldestTaskTooOld", "exp_alerts": []},
            {"eval_time": "7m", "alertname": "WorkerpoolOldestTaskTooOld",
             "exp_alerts": [_alert("page", pool="p", queue="p")]},
            {"eval_time": "3m", "alertname": "WorkerpoolRedisUnreachable",
             "exp_alerts": [_alert("page", pool="p", queue="p")]},
            {"eval_time": "7m", "alertname": "WorkerpoolCrashLooping",
             "exp_alerts": [_alert("page", pool="p", queue="p")]},
            {"eval_time": "10m", "alertname": "WorkerpoolDeadLettersGrowing",
             "exp_alerts": [_alert("ticket", pool="p", queue="p")]},
            {"eval_time": "20m", "alertname": "WorkerpoolAtMaxWorkers", "exp_alerts": []},
            {"eval_time": "35m", "alertname": "WorkerpoolAtMaxWorkers",
             "exp_alerts": [_alert("ticket", pool="p", queue="p")]},
            {"eval_time": "4m", "alertname": "WorkerpoolMasterDown",
             "exp_alerts": [_alert("page", job="workerpool", instance="m:9464")]},
        ],
    }]}
    path = tmp_path / "alerts.test.yml"
    path.write_text(yaml.safe_dump(tests))
    run = _promtool("test", "rules", str(path))
    assert run.returncode == 0, run.stdout + run.stderr


def _alert(severity: str, **labels: str) -> dict[str, object]:
    return {"exp_labels": {"severity": severity, **labels}}


def _shipped_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    return exprs + rules


def test_every_dashboard_and_alert_query_names_a_metric_a_master_exports(start_pool, redis_url):
    port = free_port()
    start_pool(manifest("dash", handler="metrics_handlers:sleepy", minWorkers=1, maxWorkers=2),
               "--metrics-address", f"127.0.0.1:{port}").wait_workers(1, 0)
    Queue("dash", redis_url=redis_url).enqueue({"s": 0})
    text = wait_until(lambda: scrape(port), 15)
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples} | {"up"}
    queries = _shipped_queries()
    assert len(queries) >= 15
    for expr in queries:
        names = set(_NAMES.findall(expr))
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} names {sorted(names - exported)}, which we do not export"


@pytest.mark.parametrize("component", ["metrics", "prometheus-operator"])
def test_kustomize_components_build(tmp_path: Path, component: str):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    components = ["metrics"] if component == "metrics" else ["metrics", component]
    deploy = os.path.relpath(ROOT / "deploy", overlay)  # kustomize refuses absolute paths
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [deploy], "components": [f"{deploy}/components/{c}" for c in components]}))
    built = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True,
                           timeout=60)
    assert built.returncode == 0, built.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(built.stdout)}
    container = docs[("Deployment", "workerpool-operator")]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "WORKERPOOL_METRICS_ADDRESS", "value": ":9464"} in container["env"]
    assert {"name": "metrics", "containerPort": 9464} in container["ports"]
    assert ("Service", "workerpool-operator-metrics") in docs
    if component == "prometheus-operator":
        assert docs[("PodMonitor", "workerpool-operator")]["spec"]["podMetricsEndpoints"][0]["honorLabels"]
        assert ("PrometheusRule", "workerpool") in docs
