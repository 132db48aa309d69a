"""Kopf handlers, registered into an explicit registry by `register()` (nothing happens at import).

- one event handler on BookingPlatform keeps the newest body, forgets deleted platforms and starts a
  reconcile when what a pass reads of the platform changed (the coordinator tells): every existing one
  at start (kopf's first listing), a new one, an edited spec, pause and unpause. Not kopf's
  create/update/resume handlers: those make kopf PATCH its progress and last-handled configuration into
  every CR after each change (a write, and one more watch event, per platform), and the generation and
  the pause flag already say what changed;
- startup starts one informer per child kind (cache.py), whose events the coordinator coalesces per
  platform, and the resync loop (not kopf.timer: timers and daemons make kopf add a finalizer to the CR).

No handler here makes kopf put a finalizer on anything or write to the CR: there is no change handler,
no on.delete handler, no timer, no daemon, so deleting a CR never waits for the operator; children go
with their owner through the garbage collector. Every handler is async: all of the operator runs on
kopf's event loop.
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
from booking_operator.coordinator import Coordinator

log = logging.getLogger(__name__)

CR = (names.GROUP, names.VERSION, names.PLURAL)


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
    """Kopf's settings: state in our annotations, never in our status, should a handler ever need it
    (none does: the event handler keeps no state in the CR); warnings-only events."""
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
    coord.wait_for_listings([inf.synced for inf in informers])

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
            return
        rec.store.upsert(_plain(body))
        # type None: kopf's first listing, the platforms that existed when the operator started.
        task = coord.platform_event(key, first_listing=type is None)
        if task is not None:
            await task
