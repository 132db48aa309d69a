"""A real Kubernetes control plane without containers: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK (fake nodes, so pods become Ready and Deployments Available).

Binaries come from scripts/infra/k8s.sh (built through the Go module proxy). `KUBEBUILDER_ASSETS`
may point at another folder holding the same binaries.

    python -m booking_testing.kube up --dir .infra/kube    # prints `export KUBECONFIG=...`
    python -m booking_testing.kube down --dir .infra/kube
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from booking_testing.procs import (
    CACHE_ROOT,
    InfraError,
    Server,
    free_port,
    run_checked,
    start_server,
    stop_pid,
    wait_ready,
)

K8S_VERSION = "1.36.3"
TOKEN = "test-token"  # noqa: S105 - a throwaway local cluster's admin token
_STALE = ("DaemonSet", "Job", "ReplicaSet", "StatefulSet")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def bin_dir() -> Path:
    """Folder with the control-plane binaries; fails with a clear message when they are missing."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    d = Path(assets) if assets else CACHE_ROOT / f"k8s-v{K8S_VERSION}" / "bin"
    missing = [b for b in BINARIES if not (d / b).exists()]
    if missing:
        raise InfraError(f"control-plane binaries missing in {d}: {missing}; run `make provision`")
    return d


def _kubeconfig(server: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        },
        indent=2,
    )


def _write_sa_keys(d: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = d / "sa.key", d / "sa.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def _get(server: str, path: str) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(server + path, headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    with urllib.request.urlopen(req, context=ctx, timeout=3) as resp:  # noqa: S310 - local https only
        return int(resp.status), resp.read()


def _post(server: str, path: str, body: dict[str, object]) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(  # noqa: S310
        server + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(req, context=ctx, timeout=5).read()  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # already exists
            raise


@dataclass
class KubeCluster:
    """The running control plane."""

    workdir: Path
    server: str
    kubeconfig: Path
    servers: list[Server] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every component, newest first."""
        for s in reversed(self.servers):
            s.stop(timeout=10)


def _kwok_stages(bins: Path) -> Path:
    stages = bins.parent / "kwok-stages.yaml"
    if not stages.exists():
        raise InfraError(f"{stages} missing: rerun scripts/infra/k8s.sh")
    return stages


def start_kube(workdir: Path, *, nodes: int = 1) -> KubeCluster:
    """Start the control plane in workdir; returns once the API is ready and a fake node is Ready."""
    bins = bin_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(server))
    (workdir / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
    sa_key, sa_pub = _write_sa_keys(workdir)
    cluster = KubeCluster(workdir=workdir, server=server, kubeconfig=kubeconfig)
    try:
        etcd = start_server(
            "etcd",
            [
                str(bins / "etcd"),
                "--name",
                "default",
                "--data-dir",
                str(workdir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",
                "--log-level",
                "warn",
            ],
            workdir=workdir,
        )
        cluster.servers.append(etcd)
        apiserver = start_server(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={workdir / 'certs'}",
                f"--token-auth-file={workdir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-node-port-range=30000-32767",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
            workdir=workdir,
        )
        cluster.servers.append(apiserver)

        def api_ready() -> bool:
            etcd.check_alive()
            apiserver.check_alive()
            return _get(server, "/readyz")[0] == 200

        wait_ready(api_ready, timeout=120, what="kube-apiserver /readyz", interval=0.5)
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]
        cluster.servers.append(
            start_server(
                "kube-controller-manager",
                [
                    str(bins / "kube-controller-manager"),
                    *common,
                    f"--secure-port={free_port()}",
                    f"--service-account-private-key-file={sa_key}",
                    "--use-service-account-credentials=false",
                    "--controllers=*",
                    "--concurrent-gc-syncs=5",
                    # no metrics API here: HPAs stay ScalingActive=False, but must not spin
                    "--horizontal-pod-autoscaler-sync-period=15s",
                    # 1.36's beta read-your-writes check stalled the ReplicaSet controller for minutes in
                    # one CI run ("read version: 278 is not as new as written version: 315"): no Deployment
                    # got pods. The suite tests our operator, not this check; the pre-1.36 behaviour stays.
                    "--feature-gates=" + ",".join(f"StaleControllerConsistency{k}=false" for k in _STALE),
                    "--v=1",
                ],
                workdir=workdir,
            )
        )
        cluster.servers.append(
            start_server(
                "kube-scheduler",
                [str(bins / "kube-scheduler"), *common, f"--secure-port={free_port()}"],
                workdir=workdir,
            )
        )
        cluster.servers.append(
            start_server(
                "kwok",
                [
                    str(bins / "kwok"),
                    f"--kubeconfig={kubeconfig}",
                    "--manage-all-nodes=true",
                    # renew node leases, or the node-lifecycle controller marks the node NotReady after
                    # ~50 s and every pod with it (KWOK never restores them)
                    "--node-lease-duration-seconds=40",
                    f"--config={_kwok_stages(bins)}",
                    f"--server-address=127.0.0.1:{free_port()}",
                ],
                workdir=workdir,
            )
        )
        for i in range(nodes):
            _post(server, "/api/v1/nodes", _node(f"kwok-node-{i}"))

        def node_ready() -> bool:
            for s in cluster.servers:
                s.check_alive()
            items = json.loads(_get(server, "/api/v1/nodes")[1])["items"]
            conds = [
                c for n in items for c in n.get("status", {}).get("conditions", []) if c["type"] == "Ready"
            ]
            return len(conds) >= nodes and all(c["status"] == "True" for c in conds)

        wait_ready(node_ready, timeout=90, what="a KWOK node to become Ready", interval=0.5)

        def default_sa() -> bool:
            return _get(server, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

        wait_ready(
            default_sa, timeout=60, what="the default ServiceAccount (controller-manager)", interval=0.5
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
        },
    }


def stop_dir(workdir: Path) -> None:
    """Stop every component whose pid file is in workdir (for `down`)."""
    for pidfile in sorted(workdir.glob("*.pid")):
        with contextlib.suppress(ValueError):
            stop_pid(int(pidfile.read_text().strip()), timeout=10)
        pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """`up` starts the control plane in --dir and prints the KUBECONFIG export; `down` stops it."""
    p = argparse.ArgumentParser(prog="python -m booking_testing.kube")
    p.add_argument("action", choices=("up", "down"))
    p.add_argument("--dir", type=Path, default=Path(".infra/kube"))
    args = p.parse_args(argv)
    workdir: Path = args.dir.resolve()
    if args.action == "down":
        stop_dir(workdir)
        return 0
    stop_dir(workdir)  # a stale cluster in the same folder would hold its ports and data
    if workdir.exists():
        run_checked(["rm", "-rf", str(workdir)], what="clean kube workdir")
    try:
        cluster = start_kube(workdir)
    except InfraError as exc:
        print(f"control plane failed to start: {exc}", file=sys.stderr)
        for log in sorted(workdir.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
