"""`booking operator`: the entrypoint; the wiring is in runner.py."""

from __future__ import annotations

import argparse
import sys


def _without_kubernetes_client() -> None:
    """Keep kopf from importing the `kubernetes` package: kopf imports it only to recognise its model
    objects, which the operator never passes, and its generated models cost ~17 MiB of RSS. The login
    fallback for exec-plugin kubeconfigs (handlers.login) lets it back in."""
    if "kubernetes" not in sys.modules:
        sys.modules["kubernetes"] = None  # type: ignore[assignment]


def cli(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM."""
    _without_kubernetes_client()
    # Imported only now: kopf must not see the `kubernetes` package (above).
    from booking_operator.runner import run

    return run(args)
