"""Kubernetes manifests and the Grafana dashboard: they parse, agree with each other and with the code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from dsp.observability.metrics import Metrics, SinkMetrics

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "deploy" / "k8s"))

import render as k8s  # noqa: E402


def _by_kind() -> dict[str, dict]:  # type: ignore[type-arg]
    docs = k8s.render(REPO / "bidder_configs", image="registry.example/dsp:abc")
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_deployment_probes_selectors_and_config_hash() -> None:
    docs = _by_kind()
    dep = docs["Deployment/dsp-bidder"]
    pod = dep["spec"]["template"]
    bidder = pod["spec"]["containers"][0]
    assert bidder["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert bidder["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert bidder["image"] == "registry.example/dsp:abc"
    labels = pod["metadata"]["labels"]
    for name in ("Service/dsp-bidder", "PodDisruptionBudget/dsp-bidder"):
        sel = docs[name]["spec"]["selector"]
        sel = sel.get("matchLabels", sel)
        assert sel.items() <= labels.items(), name
    assert docs["HorizontalPodAutoscaler/dsp-bidder"]["spec"]["scaleTargetRef"]["name"] == "dsp-bidder"
    cm = docs["ConfigMap/dsp-bidder-configs"]
    assert pod["metadata"]["annotations"]["dsp.example/config-hash"] == \
        cm["metadata"]["annotations"]["dsp.example/config-hash"]
    env = {e["name"] for e in bidder["env"]}
    assert {"REDIS_URL", "DSP_CONFIGS", "DSP_WORKERS", "PROMETHEUS_MULTIPROC_DIR"} <= env


def test_init_container_rebuilds_the_config_tree(tmp_path: Path) -> None:
    """Run the init container's own shell script on the rendered ConfigMap."""
    docs = _by_kind()
    data = docs["ConfigMap/dsp-bidder-configs"]["data"]
    cm_dir, out_dir = tmp_path / "configmap", tmp_path / "configs"
    cm_dir.mkdir()
    out_dir.mkdir()
    for key, text in data.items():
        (cm_dir / key).write_text(text, encoding="utf-8")
    init = docs["Deployment/dsp-bidder"]["spec"]["template"]["spec"]["initContainers"][0]
    script = init["args"][0].replace("/configmap", str(cm_dir)).replace("/configs", str(out_dir))
    subprocess.run(["/bin/sh", "-c", script], check=True, capture_output=True)
    src = REPO / "bidder_configs"
    want = {str(p.relative_to(src)): p.read_text(encoding="utf-8")
            for p in src.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json")}
    got = {str(p.relative_to(out_dir)): p.read_text(encoding="utf-8")
           for p in out_dir.rglob("*") if p.is_file()}
    assert got == want and any("/" in k for k in got)


def test_config_hash_changes_with_content(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "a.yaml").write_text("id: a\n")
    h1 = k8s.config_hash(k8s.flatten(tmp_path))
    (tmp_path / "campaigns" / "a.yaml").write_text("id: b\n")
    assert k8s.config_hash(k8s.flatten(tmp_path)) != h1


def test_dashboard_queries_only_use_exported_metrics() -> None:
    dash = json.loads((REPO / "dashboards" / "grafana-dsp.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    metrics = Metrics(CollectorRegistry())
    sink = SinkMetrics(CollectorRegistry())  # dsp events sink's own process
    exported: set[str] = set()
    for fam in [*metrics.registry.collect(), *sink.registry.collect()]:
        exported.add(fam.name)
        for suffix in ("_total", "_bucket", "_count", "_sum"):
            exported.add(fam.name + suffix)
    used = {m for e in exprs for m in re.findall(r"\bdsp_[a-z_]+", e)}
    assert used and used <= exported, sorted(used - exported)
    covered = {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in used}
    must = {"dsp_bid_requests", "dsp_nobids", "dsp_request_latency_seconds", "dsp_stage_latency_seconds",
            "dsp_batch_size", "dsp_redis_errors", "dsp_deadline_misses", "dsp_wins", "dsp_spend_micros",
            "dsp_pacing_multiplier", "dsp_ledger_drift_micros",
            "dsp_events_written", "dsp_events_dropped", "dsp_sink_oldest_unread_seconds",
            "dsp_sink_lag_entries", "dsp_sink_events", "dsp_sink_files", "dsp_sink_partition_files"}
    assert must <= covered, sorted(must - covered)


def test_render_validates_before_configs_ship(tmp_path: Path) -> None:
    """The render runs ``dsp config validate`` first: a tree failing the fair-lending gate renders
    nothing (empty stdout, non-zero exit), so ``| kubectl apply -f -`` applies nothing."""
    import shutil

    bad = tmp_path / "configs"
    shutil.copytree(REPO / "bidder_configs", bad)
    path = bad / "campaigns" / "quickloan-prime.yaml"
    path.write_text(path.read_text().replace("intent_min: 0.004", "intent_min: 0.01"))
    script = str(REPO / "deploy" / "k8s" / "render.py")
    failed = subprocess.run([sys.executable, script, "--configs", str(bad)], capture_output=True,
                            text=True, check=False)
    assert failed.returncode == 2 and failed.stdout == ""
    assert "adverse-impact ratio by age band" in failed.stderr
    ok = subprocess.run([sys.executable, script], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "kind: ConfigMap" in ok.stdout
def test_admin_port_is_private_and_scraped_with_the_token() -> None:
    """/metrics and /admin/* live on the admin port: in the pod, never in the exchange-facing
    Service; the PodMonitor scrapes it with the admin token the pods require off loopback."""
    docs = {f"{d['kind']}/{d['metadata']['name']}": d
            for d in k8s.render(REPO / "bidder_configs", podmonitor=True)}
    pod = docs["Deployment/dsp-bidder"]["spec"]["template"]
    bidder = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in bidder["ports"]}
    assert ports == {"http": 8080, "admin": 9090}
    service_ports = {p["targetPort"] for p in docs["Service/dsp-bidder"]["spec"]["ports"]}
    assert service_ports == {"http"}
    env = {e["name"]: e for e in bidder["env"]}
    assert env["DSP_ADMIN_PORT"]["value"] == "9090" and env["DSP_ADMIN_HOST"]["value"] == "0.0.0.0"
    assert env["DSP_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "admin-token"
    assert "DSP_TOKEN_KEYS" in env and "DSP_USER_HASH_KEY" in env
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    endpoint = docs["PodMonitor/dsp-bidder"]["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "admin" and endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["credentials"] == {"name": "dsp-secrets", "key": "admin-token"}
    # every campaign's conversion secret variable is wired from the secret
    for campaign in (REPO / "bidder_configs" / "campaigns").glob("*.yaml"):
        var = [ln.split(":", 1)[1].split("#")[0].strip() for ln in campaign.read_text().splitlines()
               if ln.startswith("conversion_secret_env:")]
        assert var and var[0] in env, campaign.name
