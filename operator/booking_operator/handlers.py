"""Kopf handlers, registered into an explicit registry by `register()` (nothing happens at import).

- create/update/resume on BookingPlatform: a reconcile, once the child cache holds its first listing;
- an event handler on BookingPlatform keeps the newest body and forgets deleted platforms;
- startup starts one informer per child kind (cache.py), whose events the coordinator coalesces per
  platform, and the resync loop (not kopf.timer: timers and daemons make kopf add a finalizer to the CR).

No handler here makes kopf put a finalizer on anything: there is no on.delete handler, no timer, no
daemon, so deleting a CR never waits for the operator; children go with their owner through the
garbage collector. Every handler is async: all of the operator runs on kopf's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Mapping
from typing import Any

import kopf

from booking_operator import names
from booking_operator.cache import Informer
from booking_operator.coordinator import RETRY_SECONDS, Coordinator
from booking_operator.reconcile import ReconcileError

log = logging.getLogger(__name__)

CR = (names.GROUP, names.VERSION, names.PLURAL)
# A resume before the informers' first listings would see no children and re-apply every one.
SYNC_TIMEOUT = 60.0


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as a plain dict, sharing kopf's freshly parsed values (nothing mutates them; a deep copy
    of every CR event cost more CPU than the rest of its handling), without managedFields."""
    meta = {k: v for k, v in body.get("metadata", {}).items() if k != "managedFields"}
    return {**{k: v for k, v in body.items()}, "metadata": meta}


def login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """The service account in a pod, else the kubeconfig; kopf's own minimal logins, which need no
    `kubernetes` package. A kubeconfig that needs an exec plugin falls back to that package."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is not None and (info.token or info.certificate_path or info.certificate_data or info.username):
        return info
    if "kubernetes" in sys.modules and sys.modules["kubernetes"] is None:
        del sys.modules["kubernetes"]  # main.py kept it out for kopf's sake; this login needs it
    fallback: kopf.ConnectionInfo | None = kopf.login_via_client(logger=log, settings=settings)
    if fallback is None:
        raise kopf.LoginError("no credentials: neither a service account nor a usable kubeconfig")
    return fallback


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Kopf's settings: state in our annotations (not status), warnings-only events."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration"
    )
    # Our own Events say what happened; kopf's per-handler "succeeded" events would add noise.
    settings.posting.level = logging.WARNING


def register(
    registry: kopf.OperatorRegistry,
    coord: Coordinator,
    informers: list[Informer],
    *,
    resync_seconds: float,
) -> None:
    """Register every handler of the operator into registry."""
    rec = coord.rec
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    def login_handler(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        return login(settings)

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        await rec.keda.available(force=True)
        for inf in informers:
            tasks.append(asyncio.create_task(inf.run(), name=f"informer {inf.kind.plural}"))
        tasks.append(asyncio.create_task(coord.resync_loop(resync_seconds), name="resync"))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await coord.stop()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await rec.kube.close()

    @kopf.on.probe(registry=registry, id="keda")
    def keda_probe(**_: Any) -> bool | None:
        return rec.keda.known

    @kopf.on.event(*CR, registry=registry)
    async def platform_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if type == "DELETED":
            coord.forget(key)
            rec.store.remove(key)
        else:
            rec.store.upsert(_plain(body))

    @kopf.on.resume(*CR, registry=registry)
    @kopf.on.create(*CR, registry=registry)
    @kopf.on.update(*CR, registry=registry)
    async def reconcile_platform(body: kopf.Body, reason: str, **_: Any) -> None:
        st = rec.store.upsert(_plain(body))
        meta = st.body["metadata"]
        trigger = str(getattr(reason, "value", reason))
        try:
            await asyncio.wait_for(
                asyncio.gather(*(inf.synced.wait() for inf in informers)), timeout=SYNC_TIMEOUT
            )
        except TimeoutError as exc:
            raise kopf.TemporaryError("the child cache is not filled yet", delay=RETRY_SECONDS) from exc
        try:
            await coord.reconcile_now((str(meta["namespace"]), str(meta["name"])), trigger)
        except ReconcileError as exc:
            if exc.permanent:
                raise kopf.PermanentError(str(exc)) from exc
            raise kopf.TemporaryError(str(exc), delay=RETRY_SECONDS) from exc
