"""Who runs which pass when: one pass per platform at a time, events coalesced per platform.

- A change of the BookingPlatform (a new one, an edited spec, pause or unpause, or every existing one
  when the operator starts) runs a reconcile at once, once the child cache holds its first listings; it
  reads the whole cache, so child events pending for that platform are covered by it. One that failed
  is run again after RETRY_SECONDS unless the failure was permanent (an invalid spec).
- A child event that leaves the child as the platform wants (the echo of our own apply, another
  controller's annotation) wakes nothing. Other child events only mark their platform; after a short
  quiet period one pass handles the whole burst (a wave of readiness updates is one pass, not forty).
- Reconciles the platform asked for go first: other passes wait while any is waiting or running.
- The resync marks every platform the same way, each `resync_seconds`; it reads the cache only.
- A KEDA API that appears or vanishes re-renders every platform (trigger "keda").

Everything runs on kopf's event loop; the semaphore bounds how many passes talk to the API server at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from booking_operator import metrics
from booking_operator.cache import PlatformKey
from booking_operator.client import Kind
from booking_operator.reconcile import Outcome, ReconcileError, Reconciler, platform_mark

log = logging.getLogger(__name__)

# Child events of one burst arrive within a fraction of a second (one apply pass, one rollout step).
DEBOUNCE_SECONDS = 0.5
# Passes in flight at once: enough to keep the API server busy, few enough not to queue inside it.
CONCURRENCY = 8
RETRY_SECONDS = 10.0
# How long a platform's first report (status, Events) may wait for the other new platforms' applies.
REPORT_HOLD_SECONDS = 30.0
# A pass before the informers' first listings would see no children and re-apply every one.
SYNC_TIMEOUT = 60.0
# Which trigger labels a coalesced pass when several asked for it (the first present wins).
TRIGGER_ORDER = ("keda", "drift", "retry", "resync", "status")


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: set[str] = field(default_factory=set)  # triggers waiting for the next pass
    worker: asyncio.Task[None] | None = None
    last_pass: float = float("-inf")  # loop time the last pass ended
    retry: asyncio.TimerHandle | None = None  # a failed platform pass, run again later
    retrying: asyncio.Task[None] | None = None


class Coordinator:
    """Coalesces the triggers of each platform into passes of the reconciler."""

    def __init__(
        self, rec: Reconciler, *, concurrency: int = CONCURRENCY, debounce: float = DEBOUNCE_SECONDS
    ) -> None:
        self.rec = rec
        self._debounce = debounce
        self._sem = asyncio.Semaphore(concurrency)
        self._slots: dict[PlatformKey, _Slot] = {}
        # Reconciles a platform asked for (a new or edited CR) go first: passes after child events and
        # resyncs wait while any is waiting or running, so a burst of new platforms is not queued behind
        # status refreshes of the ones already converging.
        self._urgent = 0
        self._calm = asyncio.Event()
        self._calm.set()
        self._synced: Sequence[asyncio.Event] = ()

    def wait_for_listings(self, synced: Sequence[asyncio.Event]) -> None:
        """Platform passes wait until every one of these (the informers' first listings) is set."""
        self._synced = synced

    def _slot(self, key: PlatformKey) -> _Slot:
        return self._slots.setdefault(key, _Slot())

    async def reconcile_now(self, key: PlatformKey, trigger: str) -> Outcome:
        """A reconcile the platform asked for; raises ReconcileError like Reconciler.reconcile.

        Once its children are applied, it stops counting as urgent and gives up its place among the
        passes in flight; its status and Events wait until no other platform waits to be applied (at
        most REPORT_HOLD_SECONDS): in a burst of new platforms, every child is sent before the reports."""
        slot = self._slot(key)
        self._urgent += 1
        self._calm.clear()
        urgent, holding = True, False

        def done_urgent() -> None:
            nonlocal urgent
            if urgent:
                urgent = False
                self._urgent -= 1
                if not self._urgent:
                    self._calm.set()

        async def applied() -> None:
            nonlocal holding
            done_urgent()
            holding = False
            self._sem.release()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._calm.wait(), REPORT_HOLD_SECONDS)

        try:
            async with slot.lock:
                await self._sem.acquire()
                holding = True
                try:
                    slot.pending.discard("drift")  # this pass reads every cached child
                    slot.pending.discard("resync")
                    return await self.rec.reconcile(key, trigger, after_apply=applied)
                finally:
                    slot.last_pass = asyncio.get_running_loop().time()
                    if holding:
                        self._sem.release()
        finally:
            done_urgent()

    def platform_event(self, key: PlatformKey, first_listing: bool) -> asyncio.Task[None] | None:
        """The platform's newest body is in the store: start a platform pass if what a pass reads of it
        changed (platform_mark), else nothing (our own status write, a label). None: nothing started."""
        st = self.rec.store.get(key)
        if st is None or st.body.get("metadata", {}).get("deletionTimestamp"):
            return None
        if st.handled == platform_mark(st.body):
            return None
        trigger = "resume" if first_listing else "create" if st.handled is None else "update"
        return asyncio.create_task(self.platform_pass(key, trigger), name=f"{trigger} {key[0]}/{key[1]}")

    async def platform_pass(self, key: PlatformKey, trigger: str) -> None:
        """A reconcile the platform asked for; a failure that may pass is retried after RETRY_SECONDS, a
        permanent one (an invalid spec: status and Event say so) waits for the next change."""
        st = self.rec.store.get(key)
        if st is None:
            return
        st.handled = platform_mark(st.body)
        slot = self._slot(key)
        if slot.retry is not None:
            slot.retry.cancel()
            slot.retry = None
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._synced)), SYNC_TIMEOUT)
            await self.reconcile_now(key, trigger)
        except ReconcileError as exc:
            if exc.permanent:
                return
            log.warning("%s of %s failed: %s", trigger, key[1], exc, extra={"namespace": key[0]})
        except TimeoutError:
            log.warning("the child cache is not filled yet", extra={"namespace": key[0]})
        except Exception:
            log.exception("%s of %s crashed", trigger, key[1], extra={"namespace": key[0]})
        else:
            return
        if self._slots.get(key) is slot:  # not forgotten meanwhile
            slot.retry = asyncio.get_running_loop().call_later(
                RETRY_SECONDS, self._retry_platform, key, trigger
            )

    def _retry_platform(self, key: PlatformKey, trigger: str) -> None:
        slot = self._slot(key)
        slot.retry = None
        slot.retrying = asyncio.create_task(self.platform_pass(key, trigger), name=f"retry {key[1]}")

    def touch(self, key: PlatformKey, trigger: str = "drift") -> None:
        """Ask for a pass over a known platform after the quiet period (no-op for unknown ones)."""
        if self.rec.store.get(key) is None:
            return
        slot = self._slot(key)
        slot.pending.add(trigger)
        if slot.worker is None or slot.worker.done():
            slot.worker = asyncio.create_task(self._work(key, slot), name=f"pass {key[0]}/{key[1]}")

    def on_child(self, platform: PlatformKey, child: tuple[str, str], event_type: str) -> None:
        """The cache's sink: a child's change asks for a drift pass over its platform, unless the child
        still matches what the platform wants (the echo of our own apply, another controller's
        annotation: comparing one child here is cheaper than a pass over all of them); a change of its
        status only (a rollout's progress) asks for a status refresh, which compares nothing."""
        if event_type == "STATUS":
            self.touch(platform, "status")
        elif event_type == "DELETED":
            if not self.rec.unwanted(platform, child):  # one we delete ourselves needs no pass
                self.touch(platform, "drift")
        elif not self.rec.child_current(platform, child):
            self.touch(platform, "drift")

    def forget(self, key: PlatformKey) -> None:
        """A deleted platform: drop its pending work."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        if slot.retry is not None:
            slot.retry.cancel()
        for task in (slot.worker, slot.retrying):
            if task is not None:
                task.cancel()

    async def _work(self, key: PlatformKey, slot: _Slot) -> None:
        await asyncio.sleep(self._debounce)
        while slot.pending and self.rec.store.get(key) is not None:
            await self._calm.wait()
            async with slot.lock, self._sem:
                if not slot.pending:
                    break
                trigger = next(t for t in (*TRIGGER_ORDER, *sorted(slot.pending)) if t in slot.pending)
                resync = "resync" in slot.pending
                slot.pending.clear()
                st = self.rec.store.get(key)
                if st is None or (st.desired is None and trigger != "keda"):
                    break  # its first reconcile (create/resume) has not run yet: that one covers this
                try:
                    out = await self.rec.reconcile(key, trigger)
                    if resync:
                        metrics.RESYNC_PASSES.inc()
                    if out.status_due_in > 0:
                        asyncio.get_running_loop().call_later(out.status_due_in, self.touch, key, "status")
                except ReconcileError as exc:
                    if exc.permanent:
                        continue
                    log.warning("pass over %s failed: %s", key[1], exc, extra={"namespace": key[0]})
                    asyncio.get_running_loop().call_later(RETRY_SECONDS, self.touch, key, "retry")
                except Exception:
                    log.exception("pass over %s crashed", key[1], extra={"namespace": key[0]})
                finally:
                    if trigger != "status":  # a status refresh compares nothing: no substitute for a resync
                        slot.last_pass = asyncio.get_running_loop().time()

    async def resync_loop(self, every: float) -> None:
        """Every platform gets a pass from the cache (no LIST) at least each `every` seconds: those no
        other pass covered in the last half interval are marked for one."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            for key in self.rec.store.all_keys():
                if loop.time() - self._slot(key).last_pass >= every / 2:
                    self.touch(key, "resync")

    def on_api(self, kind: Kind, served: bool) -> None:
        """The cache's sink for optional kinds: KEDA's API appeared or went away."""
        log.info("%s is %s served", kind.plural, "now" if served else "no longer")
        asyncio.get_running_loop().create_task(self._keda_changed(), name="keda-recheck")

    async def _keda_changed(self) -> None:
        before = self.rec.keda.known
        now = await self.rec.keda.available(force=True)
        if now != before:
            log.info("KEDA availability changed to %s; re-rendering every platform", now)
            for key in self.rec.store.all_keys():
                self.touch(key, "keda")

    async def stop(self) -> None:
        """Cancel pending passes."""
        for s in self._slots.values():
            if s.retry is not None:
                s.retry.cancel()
        workers = [t for s in self._slots.values() for t in (s.worker, s.retrying) if t is not None]
        for w in workers:
            w.cancel()
        for w in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await w
