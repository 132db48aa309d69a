"""The operator against a real API server: it never puts a finalizer on a BookingPlatform, so deleting one
completes while the operator is down; and kopf keeps its state out of the CR's status.

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


@pytest.fixture
def operator(
    disposable_kubeconfig: str, platforms: tuple[client.CustomObjectsApi, str], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    _, ns = platforms
    log = tmp_path / "operator.log"
    env = {
        **os.environ,
        "KUBECONFIG": disposable_kubeconfig,
        "BOOKING_OPERATOR_METRICS_PORT": "0",
        "BOOKING_OPERATOR_LIVENESS_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "booking_core.cli", "operator", "--standalone", "--namespace", ns],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    yield proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)
    print(log.read_text(errors="replace")[-3000:])


def test_a_handled_platform_carries_no_finalizer_and_deletes_with_the_operator_down(
    platforms: tuple[client.CustomObjectsApi, str], operator: subprocess.Popen[bytes]
) -> None:
    custom, ns = platforms
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["namespace"] = ns
    body["spec"]["api"]["service"]["nodePort"] = random.randint(30000, 32767)
    name = body["metadata"]["name"]
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def handled() -> dict[str, Any] | None:
        cr: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        return cr if (cr.get("status") or {}).get("conditions") else None

    cr = wait_for(handled, timeout=90, what="the operator to report conditions on the platform")
    assert not cr["metadata"].get("finalizers"), cr["metadata"].get("finalizers")
    # kopf's progress lives in annotations (AnnotationsProgressStorage), never in our status.
    assert not any(k.startswith("kopf") for k in cr["status"])
    # A change after creation is handled too (the update handler), still without a finalizer.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, {"metadata": {"labels": {"touched": "yes"}}}
    )
    time.sleep(1)
    assert not custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)["metadata"].get(
        "finalizers"
    )

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
