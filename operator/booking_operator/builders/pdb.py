"""PodDisruptionBudgets for components that run, or may be scaled to keep, more than one pod."""

from __future__ import annotations

from booking_operator.builders.common import Manifest, Workload, metadata, selector
from booking_operator.spec import Platform


def build_pdb(platform: Platform, workload: Workload, min_pods: int) -> Manifest | None:
    """A PDB named like its Deployment, or None when the switch is off or one pod is all there is."""
    pdb = workload.settings.pdb
    # With a single pod a PDB either blocks every node drain (maxUnavailable 0) or protects nothing.
    if not pdb.enabled or min_pods <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(platform, workload.name, workload.component),
        "spec": {
            "maxUnavailable": pdb.max_unavailable,
            "selector": {"matchLabels": selector(platform, workload.component)},
        },
    }
