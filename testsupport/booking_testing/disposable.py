"""May the tests change this cluster? Only one they started, or one explicitly marked throwaway.

A cluster the user brings through KUBECONFIG is theirs: tests create namespaces there and delete
them, nothing else. Cluster-wide changes (CRDs installed and removed) run only on the control plane
the suite launched, or on a kind cluster the user marks disposable with
BOOKING_TEST_DISPOSABLE_CLUSTER=1 (as kubebuilder's e2e suites refuse any context but kind's).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

DISPOSABLE_ENV = "BOOKING_TEST_DISPOSABLE_CLUSTER"
DISPOSABLE_CONTEXT_PREFIX = "kind-"


def current_context(kubeconfig: str) -> str | None:
    """The current-context of a KUBECONFIG value (files joined by ':', the first one that sets it)."""
    for part in kubeconfig.split(os.pathsep):
        path = Path(part).expanduser()
        if not part or not path.is_file():
            continue
        doc = yaml.safe_load(path.read_text()) or {}
        ctx = doc.get("current-context") if isinstance(doc, dict) else None
        if ctx:
            return str(ctx)
    return None


def not_disposable_because(kubeconfig: str, env: Mapping[str, str] | None = None) -> str | None:
    """None when the user marked the cluster disposable, else why the tests must leave it alone."""
    env = os.environ if env is None else env
    if env.get(DISPOSABLE_ENV, "").lower() not in {"1", "true", "yes"}:
        return f"{DISPOSABLE_ENV} is not set"
    ctx = current_context(kubeconfig)
    if not ctx or not ctx.startswith(DISPOSABLE_CONTEXT_PREFIX):
        return f"the current context {ctx!r} is not a kind cluster ({DISPOSABLE_CONTEXT_PREFIX}*)"
    return None
