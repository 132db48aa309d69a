"""Kopf handlers, registered into an explicit registry by `register()` (nothing happens at import).

- create/update/resume on BookingPlatform: a full reconcile;
- a watch on every labelled child kind: drift is repaired from the event itself, within seconds
  (kopf watches the built-in kinds; KEDA's kinds, whose CRDs may vanish, are watched by crdwatch);
- a background loop (not kopf.timer: timers and daemons make kopf add a finalizer to the CR) for the
  periodic resync and the KEDA re-check.

No handler here makes kopf put a finalizer on anything: there is no on.delete handler, no timer, no
daemon, so deleting a CR never waits for the operator; children go with their owner through the
garbage collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from booking_operator import names
from booking_operator.apply import CHILD_KINDS, MANAGED_BY, MANAGED_BY_LABEL
from booking_operator.client import Kind
from booking_operator.crdwatch import OptionalKindWatcher
from booking_operator.reconcile import ReconcileError, Reconciler
from booking_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

CR = (names.GROUP, names.VERSION, names.PLURAL)
RETRY_DELAY = 10.0
# Kinds whose API is optional: a kopf watch on them dies with a 404 when their CRD is deleted.
OPTIONAL_KINDS = tuple(k for k in CHILD_KINDS if k.group == "keda.sh")
BUILTIN_KINDS = tuple(k for k in CHILD_KINDS if k not in OPTIONAL_KINDS)


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in body.items()}


def configure_kopf(settings: kopf.OperatorSettings, *, workers: int = 16) -> None:
    """Kopf's settings: state in our annotations (not status), warnings-only events, child selectors."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration"
    )
    # Our own Events say what happened; kopf's per-handler "succeeded" events would add noise.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = workers
    for kind in BUILTIN_KINDS:
        # Server-side filtering: only the children we label are listed and watched.
        settings.watching.label_selectors[(kind.api_version, kind.plural)] = (
            f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        )


def register(
    registry: kopf.OperatorRegistry, rec: Reconciler, opts: OperatorSettings, namespace: str | None = None
) -> None:
    """Register every handler of the operator into registry."""
    tasks: list[asyncio.Task[None]] = []
    watchers = [
        OptionalKindWatcher(
            rec.kube.api, kind, rec.repair_child, namespace=namespace, retry_seconds=opts.keda_recheck_seconds
        )
        for kind in OPTIONAL_KINDS
    ]

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # An explicit registry has none of kopf's default login handlers: use the kubernetes client's.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        await asyncio.to_thread(rec.keda.available, force=True)
        tasks.append(asyncio.create_task(_resync_loop(rec, opts.resync_seconds), name="resync"))
        tasks.append(asyncio.create_task(_keda_loop(rec, opts.keda_recheck_seconds), name="keda-recheck"))
        for w in watchers:
            w.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for w in watchers:
            w.stop()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    @kopf.on.probe(registry=registry, id="keda")
    def keda_probe(**_: Any) -> bool | None:
        return rec.keda.known

    @kopf.on.event(*CR, registry=registry)
    def platform_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        meta = body.get("metadata", {})
        if type == "DELETED":
            rec.store.remove((str(meta.get("namespace")), str(meta.get("name"))))
        else:
            rec.store.upsert(_plain(body))

    @kopf.on.resume(*CR, registry=registry)
    @kopf.on.create(*CR, registry=registry)
    @kopf.on.update(*CR, registry=registry)
    def reconcile_platform(body: kopf.Body, reason: str, **_: Any) -> None:
        st = rec.store.upsert(_plain(body))
        meta = st.body["metadata"]
        trigger = str(getattr(reason, "value", reason))
        try:
            rec.reconcile((str(meta["namespace"]), str(meta["name"])), trigger)
        except ReconcileError as exc:
            if exc.permanent:
                raise kopf.PermanentError(str(exc)) from exc
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY) from exc

    for kind in BUILTIN_KINDS:
        kopf.on.event(
            kind.api_version,
            kind.plural,
            labels={MANAGED_BY_LABEL: MANAGED_BY, names.LABEL_PART_OF: kopf.PRESENT},
            registry=registry,
            id=f"child-{kind.plural}",
        )(_child_handler(rec, kind))


def _child_handler(rec: Reconciler, kind: Kind) -> Callable[..., None]:
    def child_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        try:
            rec.repair_child(kind.kind, type, _plain(body))
        except Exception:
            # A watch handler's error is not retried by kopf; the next resync catches up.
            log.exception("child repair failed", extra={"kind": kind.kind})

    return child_event


async def _resync_loop(rec: Reconciler, every: float) -> None:
    """Reconcile every platform each `every` seconds; a steady state sends no writes."""
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(rec.reconcile_all, "resync")
        except Exception:
            log.exception("resync pass failed")


async def _keda_loop(rec: Reconciler, every: float) -> None:
    """Re-ask discovery for KEDA; when the answer flips, reconcile everything at once."""
    while True:
        await asyncio.sleep(every)
        before = rec.keda.known
        try:
            now = await asyncio.to_thread(rec.keda.available, force=True)
        except Exception:
            log.exception("KEDA discovery failed")
            continue
        if now != before:
            log.info("KEDA availability changed to %s; reconciling every platform", now)
            try:
                await asyncio.to_thread(rec.reconcile_all, "keda")
            except Exception:
                log.exception("reconcile after the KEDA change failed")
