"""The operator against a real API server: it never puts a finalizer on a BookingPlatform, so deleting one
completes while the operator is down; and kopf keeps its state out of the CR's status.

Behaviour, not kopf's internals: `booking operator` runs as a process on a namespace of the local control
plane (the `kubeconfig` fixture starts it), handles a BookingPlatform until its status reports conditions,
and is stopped; the CR is then deleted and must be gone at once.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes import client, config

from booking_operator import handlers
from booking_testing.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "bookingplatforms.platform.pat-booking.io.yaml"
EXAMPLE = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"
GROUP, VERSION, PLURAL = "platform.pat-booking.io", "v1alpha1", "bookingplatforms"


@pytest.fixture
def kube(kubeconfig: str) -> Iterator[tuple[client.ApiClient, str]]:
    """The API client, the CRD installed and a fresh namespace (deleted afterwards)."""
    api = config.new_client_from_config(config_file=kubeconfig)
    ext = client.ApiextensionsV1Api(api)
    crd = yaml.safe_load(CRD.read_text())
    try:
        ext.create_custom_resource_definition(crd)
    except client.ApiException as exc:
        if exc.status != 409:  # already installed by another test of this session
            raise
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in (ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or [])
        ),
        timeout=30,
        what="the CRD to be established",
    )
    ns = f"op-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    yield api, ns
    core.delete_namespace(ns)


@pytest.fixture
def operator(
    kubeconfig: str, kube: tuple[client.ApiClient, str], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    _, ns = kube
    log = tmp_path / "operator.log"
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
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
    kube: tuple[client.ApiClient, str], operator: subprocess.Popen[bytes]
) -> None:
    api, ns = kube
    custom = client.CustomObjectsApi(api)
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
