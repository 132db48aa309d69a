"""The operator against a real API server: it never puts a finalizer on a BookingPlatform, so deleting one
completes while the operator is down; it writes nothing to the CR but its status (no kopf progress or
last-handled annotations), yet follows every change of the spec, pause and unpause, and on a restart
converges the change it missed while it was down.

Behaviour, not kopf's internals: `booking operator` runs as a process on a namespace of a cluster the
tests may change (the `platforms` fixture installs the CRD there: the local control plane, never a user's
own cluster), handles a BookingPlatform until its status reports conditions, and is stopped; the CR is
then deleted and must be gone at once.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes import client

from booking_operator import handlers
from booking_testing.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
GROUP, VERSION, PLURAL = "platform.pat-booking.io", "v1alpha1", "bookingplatforms"
HPA = "pat--booking--be--app--prod-hpa"


def start_operator(kubeconfig: str, ns: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "BOOKING_OPERATOR_METRICS_PORT": "0",
        "BOOKING_OPERATOR_LIVENESS_PORT": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "booking_core.cli", "operator", "--standalone", "--namespace", ns],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def operator(
    disposable_kubeconfig: str, platforms: tuple[client.CustomObjectsApi, str], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    _, ns = platforms
    log = tmp_path / "operator.log"
    proc = start_operator(disposable_kubeconfig, ns, log)
    yield proc
    stop(proc)
    print(log.read_text(errors="replace")[-3000:])


def _create_example(custom: client.CustomObjectsApi, ns: str) -> str:
    """The production example as a platform in `ns` (a free nodePort of its own); its name."""
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["namespace"] = ns
    body["spec"]["api"]["service"]["nodePort"] = random.randint(30000, 32767)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    return str(body["metadata"]["name"])


def test_a_handled_platform_carries_no_finalizer_and_deletes_with_the_operator_down(
    platforms: tuple[client.CustomObjectsApi, str], operator: subprocess.Popen[bytes]
) -> None:
    custom, ns = platforms
    name = _create_example(custom, ns)

    def handled() -> dict[str, Any] | None:
        cr: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        return cr if (cr.get("status") or {}).get("conditions") else None

    cr = wait_for(handled, timeout=90, what="the operator to report conditions on the platform")
    assert not cr["metadata"].get("finalizers"), cr["metadata"].get("finalizers")
    # Nothing of kopf's in the CR: no progress or last-handled annotations, nothing in our status.
    assert not any(k.startswith("kopf") for k in cr["status"])
    # A change of the CR after creation (a label) leaves neither a finalizer nor kopf annotations.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, {"metadata": {"labels": {"touched": "yes"}}}
    )
    time.sleep(1)
    meta = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)["metadata"]
    assert not meta.get("finalizers")
    assert not [k for k in meta.get("annotations") or {} if "kopf" in k or "last-handled" in k]

    operator.terminate()
    operator.wait(30)
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=10, what="the platform to be deleted with the operator down (no finalizer)")


def test_kopf_keeps_its_state_in_annotations() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure_kopf(settings)
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)


def _hpa_max(disposable_kubeconfig: str, ns: str) -> int | None:
    from kubernetes import config

    api = client.AutoscalingV2Api(config.new_client_from_config(config_file=disposable_kubeconfig))
    try:
        hpa = api.read_namespaced_horizontal_pod_autoscaler(HPA, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return int(hpa.spec.max_replicas)


def _paused(custom: client.CustomObjectsApi, ns: str, name: str) -> str | None:
    cr = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    conds = [c for c in (cr.get("status") or {}).get("conditions", []) if c["type"] == "Paused"]
    return str(conds[0]["status"]) if conds else None


def test_spec_edits_pause_and_a_change_missed_while_down_are_followed(
    disposable_kubeconfig: str,
    platforms: tuple[client.CustomObjectsApi, str],
    operator: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    custom, ns = platforms
    name = _create_example(custom, ns)
    wait_for(lambda: _hpa_max(disposable_kubeconfig, ns) == 5, timeout=90, what="the API's HPA")

    def edit(patch: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)

    edit({"spec": {"api": {"autoscaling": {"hpa": {"maxReplicas": 7}}}}})
    wait_for(lambda: _hpa_max(disposable_kubeconfig, ns) == 7, timeout=15, what="the HPA to follow the edit")

    # Pause (an annotation: the generation does not move), edit, unpause: the edit lands only then.
    edit({"metadata": {"annotations": {"platform.pat-booking.io/paused": "true"}}})
    wait_for(lambda: _paused(custom, ns, name) == "True", timeout=15, what="Paused=True")
    edit({"spec": {"api": {"autoscaling": {"hpa": {"maxReplicas": 8}}}}})
    wait_for(
        lambda: (
            _paused(custom, ns, name) == "True"
            and custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)["status"].get(
                "observedGeneration"
            )
            == custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)["metadata"]["generation"]
        ),
        timeout=15,
        what="the paused edit to be observed",
    )
    assert _hpa_max(disposable_kubeconfig, ns) == 7
    edit({"metadata": {"annotations": {"platform.pat-booking.io/paused": "false"}}})
    wait_for(lambda: _hpa_max(disposable_kubeconfig, ns) == 8, timeout=15, what="the edit after unpausing")

    # A change while the operator is down is converged when it starts again (kopf's first listing).
    stop(operator)
    edit({"spec": {"api": {"autoscaling": {"hpa": {"maxReplicas": 9}}}}})
    again = start_operator(disposable_kubeconfig, ns, tmp_path / "operator.log")
    try:
        wait_for(
            lambda: _hpa_max(disposable_kubeconfig, ns) == 9, timeout=60, what="the change missed while down"
        )
    finally:
        stop(again)
