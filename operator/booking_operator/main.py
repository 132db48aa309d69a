"""`booking operator`: settings, logging, metrics, then kopf with the handlers of this package."""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from dataclasses import dataclass

import kopf
import urllib3

from booking_core.logs import configure_logging
from booking_operator import handlers, metrics
from booking_operator.apply import Applier
from booking_operator.client import Kube
from booking_operator.events import EventRecorder
from booking_operator.keda import KedaDetector
from booking_operator.reconcile import Reconciler
from booking_operator.settings import OperatorSettings, get_operator_settings

log = logging.getLogger(__name__)


@dataclass
class Operator:
    """Everything kopf.run needs, built once from settings."""

    registry: kopf.OperatorRegistry
    kopf_settings: kopf.OperatorSettings
    reconciler: Reconciler


def build(opts: OperatorSettings, kube: Kube | None = None, namespace: str | None = None) -> Operator:
    """Wire the client, the reconciler and the handlers (no network traffic yet)."""
    kube = kube or Kube.from_environment(on_request=metrics.count_request)
    rec = Reconciler(
        kube=kube,
        applier=Applier(kube, opts.field_manager),
        keda=KedaDetector(kube, opts.keda_recheck_seconds),
        events=EventRecorder(kube),
    )
    registry = kopf.OperatorRegistry()
    handlers.register(registry, rec, opts, namespace=namespace)
    kopf_settings = kopf.OperatorSettings()
    handlers.configure_kopf(kopf_settings)
    return Operator(registry=registry, kopf_settings=kopf_settings, reconciler=rec)


def cli(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM."""
    opts = get_operator_settings()
    namespace = getattr(args, "namespace", None) or opts.namespace
    configure_logging(opts.log_level, os.environ.get("BOOKING_LOG_FORMAT", "json"))
    # kopf logs every watch event at DEBUG and per-object lines at INFO; ours carry the story.
    logging.getLogger("kopf").setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # A kubeconfig that says insecure-skip-tls-verify (local control planes) would warn on every request.
    warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    op = build(opts, namespace=namespace)
    metrics.serve(opts.metrics_port)
    liveness = f"http://0.0.0.0:{opts.liveness_port}/healthz" if opts.liveness_port else None
    log.info(
        "starting the operator",
        extra={"namespace": namespace or "*", "component": "operator", "outcome": bool(args.standalone)},
    )
    kopf.run(
        registry=op.registry,
        settings=op.kopf_settings,
        standalone=bool(getattr(args, "standalone", False)),
        clusterwide=namespace is None,
        namespaces=[namespace] if namespace else (),
        liveness_endpoint=liveness,
    )
    return 0
