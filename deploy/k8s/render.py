"""Render the bidder's Kubernetes manifests, with ``bidder_configs/`` as a ConfigMap, to stdout.

    python deploy/k8s/render.py [--configs bidder_configs] [--image registry/dsp-bidder:TAG] \\
        | kubectl apply -f -

ConfigMap keys are flat, so ``campaigns/quickloan-prime.yaml`` becomes the key
``campaigns--quickloan-prime.yaml``; the Deployment's init container rebuilds the tree. The
content hash of the configs goes into the pod template's ``dsp.example/config-hash`` annotation,
so a config change rolls the pods (gradually: maxUnavailable 0, PodDisruptionBudget) instead of
changing files under running bidders. Manifests rendered: settings, ConfigMap, Deployment,
Service, HPA, PodDisruptionBudget, and the PodMonitor with ``--with-podmonitor`` (Prometheus
Operator clusters only).

Before anything is rendered, ``dsp config validate`` runs on the tree (every problem, then the
fair-lending gate: adverse-impact ratio >= 0.8 per campaign by sex and age band); when it fails,
nothing is written to stdout and the exit code is non-zero, so ``| kubectl apply -f -`` applies
nothing. The bidder itself never recomputes the gate (it has no reference data).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MANIFESTS = ("settings.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml")
SEP = "--"


def flatten(configs: Path) -> dict[str, str]:
    """{flat key: file text} for every YAML file under ``configs`` (at most one level deep)."""
    data: dict[str, str] = {}
    for path in sorted(configs.rglob("*")):
        if not path.is_file() or path.suffix not in (".yaml", ".yml", ".json"):
            continue
        rel = path.relative_to(configs)
        if len(rel.parts) > 2:
            raise ValueError(f"{rel}: only one directory level fits the flat ConfigMap layout")
        if any(SEP in part for part in rel.parts):
            raise ValueError(f"{rel}: '{SEP}' is reserved as the directory separator")
        data[SEP.join(rel.parts)] = path.read_text(encoding="utf-8")
    if not data:
        raise ValueError(f"{configs}: no config files")
    return data


def config_hash(data: dict[str, str]) -> str:
    h = hashlib.sha256()
    for key in sorted(data):
        h.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return h.hexdigest()[:16]


def render(configs: Path, image: str | None = None, *, podmonitor: bool = False
           ) -> list[dict[str, Any]]:
    data = flatten(configs)
    digest = config_hash(data)
    docs: list[dict[str, Any]] = []
    for name in MANIFESTS + (("podmonitor.yaml",) if podmonitor else ()):
        doc = yaml.safe_load((HERE / name).read_text(encoding="utf-8"))
        if doc["kind"] == "Deployment":
            tmpl = doc["spec"]["template"]
            tmpl["metadata"]["annotations"]["dsp.example/config-hash"] = digest
            if image:
                for c in tmpl["spec"]["initContainers"] + tmpl["spec"]["containers"]:
                    c["image"] = image
        docs.append(doc)
    docs.insert(1, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "dsp-bidder-configs", "labels": {"app.kubernetes.io/part-of": "dsp"},
                     "annotations": {"dsp.example/config-hash": digest}},
        "data": data,
    })
    return docs


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config files) as ``|`` blocks, so the ConfigMap stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def validate(configs: Path) -> int:
    """Run ``dsp config validate`` on ``configs`` (its report goes to stderr); its exit code."""
    cmd = [sys.executable, "-m", "dsp.cli", "config", "validate", "--configs", str(configs)]
    done = subprocess.run(cmd, cwd=REPO, stdout=sys.stderr, check=False)
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", type=Path, default=REPO / "bidder_configs")
    p.add_argument("--image", default=None, help="container image for the bidder (default dsp-bidder:latest)")
    p.add_argument("--with-podmonitor", action="store_true",
                   help="also render the PodMonitor (clusters with the Prometheus Operator)")
    args = p.parse_args(argv)
    code = validate(args.configs)
    if code != 0:
        print(f"render: {args.configs} failed validation (exit {code}); nothing rendered",
              file=sys.stderr)
        return code
    sys.stdout.write(dump(render(args.configs, args.image, podmonitor=args.with_podmonitor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
