"""Without KEDA's CRDs: a CPU HPA and AutoscalerAvailable=False; installing them switches to ScaledObjects.

Removing a cluster's KEDA CRDs is only safe where nothing else uses them, so this runs only when the
suite owns them (E2E_KEDA_CRDS_DIR, the local control plane); it reinstalls them before it ends.
"""

from __future__ import annotations

import time

import pytest
from e2elib import Cluster, install_keda_crds, keda_crd_files, prod_platform, remove_keda_crds, wait_for

pytestmark = pytest.mark.e2e

NAME = "pat--booking--be"
PTR = f"{NAME}--consumer-pat-test-result--prod"


@pytest.mark.skipif(not keda_crd_files(), reason="needs E2E_KEDA_CRDS_DIR: the suite must own KEDA's CRDs")
def test_hpa_fallback_then_switch_to_keda(cluster: Cluster, namespace: str) -> None:
    remove_keda_crds(cluster)
    try:
        cluster.apply_platform(prod_platform(namespace))

        def fallback() -> bool:
            hpas = {
                h["metadata"]["name"]
                for h in cluster.children(namespace, "horizontalpodautoscalers", "autoscaling/v2")
            }
            cond = cluster.condition(namespace, NAME, "AutoscalerAvailable") or {}
            return (
                f"{PTR}-hpa" in hpas
                and cond.get("status") == "False"
                and cond.get("reason") == "KedaNotInstalled"
            )

        wait_for(fallback, timeout=60, what="the CPU HPA fallback and AutoscalerAvailable=False")
        assert cluster.platform(namespace, NAME)["status"]["autoscaling"] == "hpa-fallback"
        events = cluster.core.list_namespaced_event(namespace).items
        assert any(e.reason == "AutoscalerFallback" for e in events)
    finally:
        install_keda_crds(cluster)

    t0 = time.monotonic()

    def switched() -> bool:
        sos = cluster.children(namespace, "scaledobjects", "keda.sh/v1alpha1")
        hpas = {
            h["metadata"]["name"]
            for h in cluster.children(namespace, "horizontalpodautoscalers", "autoscaling/v2")
        }
        cond = cluster.condition(namespace, NAME, "AutoscalerAvailable") or {}
        return (
            [s["metadata"]["name"] for s in sos] == [f"kafka-{PTR}"]
            and f"{PTR}-hpa" not in hpas
            and cond.get("status") == "True"
        )

    wait_for(switched, timeout=90, what="the switch to a ScaledObject once KEDA's CRDs exist")
    print(f"switched to KEDA {time.monotonic() - t0:.1f}s after the CRDs were installed")
    assert cluster.platform(namespace, NAME)["status"]["autoscaling"] == "keda"
