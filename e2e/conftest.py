"""e2e fixtures: a namespace per test, KEDA's API when a test needs it, and failure reports.

The operator is already running (a host process for `make e2e`, a Deployment for `make e2e-kind`);
see e2elib.py for the environment variables the scripts set.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, utils

sys.path.insert(0, str(Path(__file__).parent))  # the tests import e2elib (pytest runs with importlib mode)

from e2elib import (
    GROUP,
    PLURAL,
    RESTRICTED,
    Cluster,
    install_keda_crds,
    keda_crd_files,
    namespace_objects,
    wait_for,
)

# The namespaces the current test touched, for the events dump on failure.
_touched: list[str] = []


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The cluster KUBECONFIG names; the suite needs the BookingPlatform CRD installed."""
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("KUBECONFIG is not set: run `make e2e` or `make e2e-kind`")
    c = Cluster()
    wait_for(
        lambda: c.ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}"),
        timeout=30,
        what="the BookingPlatform CRD",
    )
    return c


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test (restricted, with E2E_NAMESPACE_OBJECTS), deleted afterwards."""
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    meta = client.V1ObjectMeta(name=ns, labels=RESTRICTED)
    cluster.core.create_namespace(client.V1Namespace(metadata=meta))
    _touched.append(ns)
    for obj in namespace_objects():
        utils.create_from_dict(cluster.api, obj, namespace=ns)
    yield ns
    cluster.core.delete_namespace(ns)


@pytest.fixture
def keda(cluster: Cluster) -> None:
    """KEDA's ScaledObject API is served (installed here from E2E_KEDA_CRDS_DIR when given)."""
    if keda_crd_files():
        install_keda_crds(cluster)
    else:
        try:
            cluster.get_json("/apis/keda.sh/v1alpha1")
        except client.ApiException:
            pytest.skip("KEDA is not installed and E2E_KEDA_CRDS_DIR is not set")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure: the operator's log and the events of the namespaces the test used."""
    outcome = yield
    report = outcome.get_result()
    if report.when in ("setup", "call") and report.failed and os.environ.get("KUBECONFIG"):
        try:
            c = Cluster()
            sections = [("operator log (tail)", c.operator_log())]
            for ns in _touched:
                sections.append((f"kubectl get events -n {ns} --sort-by=.lastTimestamp", c.events(ns)))
            for title, text in sections:
                report.sections.append((title, text))
        except Exception as exc:  # the report must never hide the real failure
            report.sections.append(("diagnostics", f"could not collect: {exc!r}"))
    if report.when == "teardown":
        _touched.clear()
