"""A tiny kubectl stand-in for the e2e scripts (kubectl may not be installed): apply, delete, wait.

python e2e/kubetool.py apply FILE_OR_DIR...       # server-side apply, field manager "e2e"
python e2e/kubetool.py delete FILE_OR_DIR...
python e2e/kubetool.py wait-crd NAME... [--timeout S]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, dynamic
from kubernetes.dynamic.exceptions import NotFoundError

from booking_testing.wait import WaitTimeoutError, wait_for

warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)


def load_client() -> dynamic.DynamicClient:
    """A DynamicClient from KUBECONFIG (or in-cluster)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return dynamic.DynamicClient(client.ApiClient())


def documents(paths: list[str]) -> list[dict[str, Any]]:
    """Every YAML document in the files (directories: their *.yaml, sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    docs = []
    for f in files:
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") != "Kustomization"]
    return docs


def apply(dc: dynamic.DynamicClient, doc: dict[str, Any], manager: str = "e2e") -> Any:
    """Server-side apply one object."""
    res = dc.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = doc["metadata"].get("namespace") if res.namespaced else None
    return res.server_side_apply(body=doc, namespace=ns, field_manager=manager, force_conflicts=True)


def delete(dc: dynamic.DynamicClient, doc: dict[str, Any]) -> None:
    """Delete one object; absent is fine."""
    res = dc.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = doc["metadata"].get("namespace") if res.namespaced else None
    with contextlib.suppress(NotFoundError):
        res.delete(name=doc["metadata"]["name"], namespace=ns)


def wait_crds(dc: dynamic.DynamicClient, names: list[str], timeout: float) -> None:
    """Wait until each CRD is Established."""
    crds = dc.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    deadline = time.monotonic() + timeout
    for name in names:

        def established(name: str = name) -> bool:
            conds = crds.get(name=name).to_dict().get("status", {}).get("conditions", [])
            return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

        left = max(0.0, deadline - time.monotonic())
        try:
            wait_for(
                established,
                timeout=left,
                what=f"CRD {name} Established",
                interval=0.5,
                ignore=(NotFoundError,),
            )
        except WaitTimeoutError as exc:
            raise SystemExit(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="kubetool")
    p.add_argument("action", choices=("apply", "delete", "wait-crd"))
    p.add_argument("targets", nargs="+")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args(argv)
    dc = load_client()
    if args.action == "wait-crd":
        wait_crds(dc, args.targets, args.timeout)
        return 0
    for doc in documents(args.targets):
        if args.action == "apply":
            apply(dc, doc)
        else:
            delete(dc, doc)
        print(f"{args.action}: {doc['kind']}/{doc['metadata']['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
