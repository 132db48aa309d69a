"""The operator's wiring: client, cache, reconciler, coordinator and kopf handlers, then kopf.run."""

from __future__ import annotations

import argparse
import logging
import math
import os
from dataclasses import dataclass

import kopf

from booking_core.logs import configure_logging
from booking_operator import handlers, metrics
from booking_operator.apply import CHILD_KINDS, Applier
from booking_operator.cache import ChildCache, Informer
from booking_operator.client import Kube
from booking_operator.coordinator import Coordinator
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
    coordinator: Coordinator


def build(opts: OperatorSettings, namespace: str | None = None) -> Operator:
    """Wire the client, the cache, the reconciler, the coordinator and the handlers (no traffic yet)."""
    kopf_settings = kopf.OperatorSettings()
    handlers.configure_kopf(kopf_settings)
    kube = Kube(lambda: handlers.login(kopf_settings), on_request=metrics.count_request)
    cache = ChildCache(opts.field_manager)
    rec = Reconciler(
        kube=kube,
        applier=Applier(kube, opts.field_manager),
        # The informer of ScaledObjects notices KEDA's API coming and going: no periodic discovery.
        keda=KedaDetector(kube, recheck_seconds=math.inf),
        events=EventRecorder(kube),
        cache=cache,
    )
    coord = Coordinator(rec)
    retry = opts.keda_recheck_seconds  # how soon a kind whose API is not served (KEDA's) is listed again
    informers = [
        Informer(kube, kind, cache, coord.on_child, coord.on_api, namespace=namespace, retry_seconds=retry)
        for kind in CHILD_KINDS
    ]
    registry = kopf.OperatorRegistry()
    handlers.register(registry, coord, informers, resync_seconds=opts.resync_seconds)
    return Operator(registry=registry, kopf_settings=kopf_settings, coordinator=coord)


def run(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM."""
    opts = get_operator_settings()
    namespace = getattr(args, "namespace", None) or opts.namespace
    configure_logging(opts.log_level, os.environ.get("BOOKING_LOG_FORMAT", "json"))
    # kopf logs every watch event at DEBUG and per-object lines at INFO; ours carry the story.
    logging.getLogger("kopf").setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
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
