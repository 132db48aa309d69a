"""One pass over a BookingPlatform: render, compare with the cached children, apply what differs, delete
what is no longer rendered, report.

Children are read from the informers' cache (cache.py), never listed. A pass is a *reconcile* when the
platform itself asked for it (create, update, resume, a KEDA switch) or when it had children to write; a
pass after child events or a resync that finds every child current is a *check* (metrics count the two
apart), which at most refreshes the status. The coordinator runs one pass per platform at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from booking_operator import metrics, names
from booking_operator.apply import (
    CHILD_KINDS,
    DEPLOYMENT,
    KINDS_BY_KIND,
    Applier,
    ChildKey,
    Owner,
    Plan,
    adopt,
    key_of,
    owned_by,
    plan,
)
from booking_operator.cache import ChildCache, PlatformKey, decode, rv_of
from booking_operator.client import Kind, Kube, KubeError
from booking_operator.drift import needs_apply
from booking_operator.events import NORMAL, WARNING, EventRecorder
from booking_operator.keda import KEDA_GROUP_VERSION, AutoscalerDecision, KedaDetector, decide
from booking_operator.render import autoscalers, render
from booking_operator.spec import InvalidPlatformError, Platform, parse_platform
from booking_operator.status import (
    AUTOSCALER_AVAILABLE,
    ComponentState,
    Observation,
    compute_status,
    condition,
    deadline_exceeded,
    deployment_state,
    status_changed,
    transitions,
)

log = logging.getLogger(__name__)

PAUSED_ANNOTATION = f"{names.GROUP}/paused"
CR_KIND = Kind(names.API_VERSION, names.KIND, names.PLURAL)
# Passes the platform itself asked for: always counted as reconciles.
PLATFORM_TRIGGERS = frozenset({"create", "update", "resume", "keda"})
# A rollout moves readiness many times a second across fourteen Deployments: a pass that only refreshes
# the status writes a changed count at most this often (the last one when the interval ends); a change of
# a condition's status (Ready turning True) is written at once.
STATUS_MIN_INTERVAL = 10.0


class ReconcileError(Exception):
    """A reconciliation that failed; `permanent` when retrying cannot help (an invalid spec)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def is_paused(body: Mapping[str, Any]) -> bool:
    """The pause annotation or spec.paused."""
    ann = (body.get("metadata", {}).get("annotations") or {}).get(PAUSED_ANNOTATION, "")
    return str(ann).lower() in ("true", "1", "yes") or bool((body.get("spec") or {}).get("paused"))


def platform_mark(body: Mapping[str, Any]) -> tuple[str, int, bool]:
    """Everything of a BookingPlatform a pass reads: its uid, its generation (which the API server bumps
    on every change of the spec) and whether it is paused (an annotation, which bumps nothing)."""
    meta = body.get("metadata", {})
    return (str(meta.get("uid", "")), int(meta.get("generation", 0) or 0), is_paused(body))


@dataclass
class PlatformState:
    """What the operator remembers about one BookingPlatform between passes."""

    body: dict[str, Any]
    desired: dict[ChildKey, dict[str, Any]] | None = None
    # (uid, generation, KEDA available) the desired set was rendered for
    desired_for: tuple[str, int, bool] | None = None
    autoscalers: dict[str, str] = field(default_factory=dict)  # component -> hpa | keda
    last_status: dict[str, Any] | None = None
    applied_generation: int | None = None
    # Its namespace is being deleted: every write would be refused, and the platform goes with it.
    terminating: bool = False
    status_written_at: float = float("-inf")  # monotonic
    # Children found current, by the (resourceVersion, uid) they had, for the desired set of `desired_for`:
    # comparing the same two objects again would give the same answer, so it is not done again.
    clean: dict[ChildKey, tuple[int, str]] = field(default_factory=dict)
    # Each Deployment's readiness (and whether it is past its deadline), by the (resourceVersion, uid) it
    # was read from (None: absent), for the desired set of `desired_for`: a rollout moves one Deployment
    # at a time, and the others need not be decoded again.
    readiness: dict[ChildKey, tuple[tuple[int, str] | None, ComponentState, bool]] = field(
        default_factory=dict
    )
    # The parsed spec by the (uid, generation) it was parsed from: a status refresh or a resync of an
    # unchanged platform does not validate the same spec again.
    parsed: tuple[tuple[str, int], Platform] | None = None
    # What of the platform a platform pass last started for (see platform_mark): a later event that
    # leaves it unchanged (our own status write, a label) asks for nothing.
    handled: tuple[str, int, bool] | None = None


class PlatformStore:
    """The BookingPlatforms seen on kopf's watch, by (namespace, name)."""

    def __init__(self) -> None:
        self._items: dict[PlatformKey, PlatformState] = {}

    def upsert(self, body: Mapping[str, Any]) -> PlatformState:
        """Record the newest body of a platform (a new uid under the same name starts afresh)."""
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        st = self._items.get(key)
        if st is None or st.body.get("metadata", {}).get("uid") != meta.get("uid"):
            st = PlatformState(body=dict(body), last_status=dict(body.get("status") or {}) or None)
            self._items[key] = st
        elif rv_of(body) >= rv_of(st.body):
            st.body = dict(body)
        metrics.PLATFORMS.set(len(self._items))
        return st

    def remove(self, key: PlatformKey) -> None:
        """Forget a deleted platform."""
        self._items.pop(key, None)
        metrics.PLATFORMS.set(len(self._items))

    def get(self, key: PlatformKey) -> PlatformState | None:
        """One platform's state."""
        return self._items.get(key)

    def all_keys(self) -> list[PlatformKey]:
        """Every known platform, sorted."""
        return sorted(self._items)


@dataclass
class Outcome:
    """What one pass did."""

    writes: int = 0
    unchanged: int = 0
    status_written: bool = False
    counted_as: str = "check"  # or "reconcile"
    status_due_in: float = 0.0  # > 0: a status change waits this long (STATUS_MIN_INTERVAL)


class Reconciler:
    """Passes over platforms, reading children from the cache and writing through the applier."""

    def __init__(
        self, kube: Kube, applier: Applier, keda: KedaDetector, events: EventRecorder, cache: ChildCache
    ) -> None:
        self.kube = kube
        self.applier = applier
        self.keda = keda
        self.events = events
        self.cache = cache
        self.store = PlatformStore()
        cache.desired = self._desired_child
        metrics.watch_conditions(self.store)

    def _desired_child(self, platform: PlatformKey, child: ChildKey) -> Mapping[str, Any] | None:
        st = self.store.get(platform)
        return None if st is None or st.desired is None else st.desired.get(child)

    def child_current(self, key: PlatformKey, child: ChildKey) -> bool:
        """Whether the cached child matches what the platform's current render wants (and remember it, as
        a pass would): its change needs no pass. False when unknown: nothing rendered yet, a child we do
        not render (a pass deletes it if ours), or one that is gone."""
        st = self.store.get(key)
        if st is None or st.desired is None or (want := st.desired.get(child)) is None:
            return False
        entry = self.cache.entries_of(key).get(child)
        if entry is None:
            return False
        seen = (entry[0], entry[1])
        if st.clean.get(child) == seen:
            return True
        if needs_apply(want, decode(entry), self.applier.field_manager):
            return False
        st.clean[child] = seen
        return True

    def unwanted(self, key: PlatformKey, child: ChildKey) -> bool:
        """Whether the platform's current render leaves child out (so its absence is as wanted)."""
        st = self.store.get(key)
        return st is not None and st.desired is not None and child not in st.desired

    async def reconcile(
        self, key: PlatformKey, trigger: str, after_apply: Callable[[], Awaitable[None]] | None = None
    ) -> Outcome:
        """One pass over a platform; raises ReconcileError when it failed. `after_apply`, if given, is
        awaited once the children are written, before the status and Events are."""
        st = self.store.get(key)
        if st is None:
            return Outcome()
        started = time.monotonic()
        counted = "reconcile" if trigger in PLATFORM_TRIGGERS else "check"
        try:
            out = await self._pass(key, st, trigger, after_apply)
        except ReconcileError:
            metrics.RECONCILES.labels(trigger=trigger, outcome="error").inc()
            raise
        except KubeError as exc:  # the status write itself failed: retry like any API error
            metrics.RECONCILES.labels(trigger=trigger, outcome="error").inc()
            metrics.ERRORS.labels(reason=f"Api{exc.status}").inc()
            raise ReconcileError(str(exc)) from exc
        finally:
            metrics.RECONCILE_SECONDS.labels(trigger=trigger).observe(time.monotonic() - started)
        out.counted_as = "reconcile" if out.writes else counted
        if out.counted_as == "reconcile":
            metrics.RECONCILES.labels(trigger=trigger, outcome="ok").inc()
        else:
            metrics.CHECKS.labels(trigger=trigger).inc()
        return out

    async def _pass(
        self,
        key: PlatformKey,
        st: PlatformState,
        trigger: str,
        after_apply: Callable[[], Awaitable[None]] | None = None,
    ) -> Outcome:
        body = st.body
        meta = body.get("metadata", {})
        if meta.get("deletionTimestamp") or st.terminating:
            return Outcome()
        generation = int(meta.get("generation", 0))
        try:
            platform = self._parsed(st)
        except InvalidPlatformError as exc:
            metrics.ERRORS.labels(reason="InvalidSpec").inc()
            obs = Observation(generation=generation, error=("InvalidSpec", str(exc)[:1000]))
            await self._write_status(st, obs)
            await self.events.record(body, WARNING, "InvalidSpec", str(exc))
            raise ReconcileError(str(exc), permanent=True) from exc

        paused = is_paused(body)
        keda_ok = await self.keda.available()
        decision = decide(keda_available=keda_ok, wants_keda=_wants_keda(platform))
        if trigger == "status" and st.desired_for == (
            str(platform.uid),
            int(platform.generation or 0),
            keda_ok,
        ):
            # Only children's status moved (the informer told spec changes apart): nothing to compare.
            return await self._refresh(key, st, generation, paused, decision, 0, trigger)
        desired = self._desired(st, platform, keda_ok)
        p, live = self._plan(key, st, desired, str(platform.uid))
        if p.writes and not paused and trigger not in PLATFORM_TRIGGERS and not await self._owner_alive(st):
            return Outcome()  # children going with their deleted owner: nothing to restore
        try:
            if not paused and p.writes:
                for obj in await self.applier.execute(p, platform.namespace):
                    self.cache.put(obj, str(obj.get("kind")))
        except KubeError as exc:
            if exc.not_found and keda_ok and not await self.keda.available(force=True):
                # KEDA's CRDs went away since the last discovery: render the fallback right now.
                return await self._pass(key, st, trigger, after_apply)
            if exc.namespace_terminating:
                st.terminating = True
                return Outcome()  # the platform goes with its namespace; nothing to report
            metrics.ERRORS.labels(reason=f"Api{exc.status}").inc()
            error = ("ApplyFailed", exc.message[:1000] or str(exc))
            obs = self._observe(key, st, generation, paused, decision, 0, error=error)
            try:
                await self._write_status(st, obs)
            except KubeError:
                log.warning("could not write the status either", extra={"namespace": platform.namespace})
            await self.events.record(body, WARNING, "ApplyFailed", f"{exc.status}: {exc.message}")
            raise ReconcileError(str(exc)) from exc

        writes = 0 if paused else p.writes
        if after_apply is not None:
            await after_apply()
        await self._announce(st, body, trigger, p.apply, p.delete, paused, decision, generation)
        out = await self._refresh(key, st, generation, paused, decision, writes, trigger)
        if not paused:
            st.applied_generation = generation
        applied = {key_of(m) for m, _ in p.apply}
        for ckey, (rv, uid) in live.items():
            if ckey in desired and ckey not in applied:
                st.clean[ckey] = (rv, uid)
        out.unchanged = p.unchanged
        return out

    @staticmethod
    def _parsed(st: PlatformState) -> Platform:
        """The platform's spec, parsed once per (uid, generation): the spec changes only with the
        generation, and the rest parse_platform reads (name, namespace, uid) never changes for one uid."""
        meta = st.body.get("metadata", {})
        ident = (str(meta.get("uid", "")), int(meta.get("generation", 0)))
        if st.parsed is None or st.parsed[0] != ident:
            st.parsed = (ident, parse_platform(st.body))
        return st.parsed[1]

    def _plan(
        self, key: PlatformKey, st: PlatformState, desired: dict[ChildKey, dict[str, Any]], uid: str
    ) -> tuple[Plan, dict[ChildKey, tuple[int, str]]]:
        """The plan over the cached children, comparing only those that changed since they were last found
        current; returns it with the (resourceVersion, uid) of the children it compared."""
        entries = self.cache.entries(key)
        compared = {k: (e[0], e[1]) for k, e in entries.items() if st.clean.get(k) != (e[0], e[1])}
        st.clean = {k: v for k, v in st.clean.items() if k not in compared and k in entries}
        todo = [d for k, d in desired.items() if k not in st.clean]
        live = {k: decode(entries[k]) for k in compared}
        p = plan(todo, live, uid, self.applier.field_manager)
        p.unchanged += len(desired) - len(todo)
        return p, compared

    async def _refresh(
        self,
        key: PlatformKey,
        st: PlatformState,
        generation: int,
        paused: bool,
        decision: AutoscalerDecision,
        writes: int,
        trigger: str,
    ) -> Outcome:
        """Write the status if it changed: at once after writes or a platform's own change, otherwise at
        most every STATUS_MIN_INTERVAL (status_due_in says when the held-back change is due)."""
        obs = self._observe(key, st, generation, paused, decision, writes)
        wait = st.status_written_at + STATUS_MIN_INTERVAL - time.monotonic()
        if writes or trigger in PLATFORM_TRIGGERS or wait <= 0:
            return Outcome(writes=writes, status_written=await self._write_status(st, obs))
        new = compute_status(st.last_status, obs)
        if any(transitions(st.last_status, new)):
            return Outcome(writes=writes, status_written=await self._write_status(st, obs))
        return Outcome(writes=writes, status_due_in=wait if status_changed(st.last_status, new) else 0.0)

    async def _owner_alive(self, st: PlatformState) -> bool:
        """Whether the platform still exists and is not being deleted: the garbage collector removes
        children right after their owner, and those must not be restored."""
        meta = st.body["metadata"]
        try:
            owner = await self.applier.get(CR_KIND, str(meta["namespace"]), str(meta["name"]))
        except KubeError:
            return False
        return (
            owner is not None
            and owner["metadata"].get("uid") == meta.get("uid")
            and not owner["metadata"].get("deletionTimestamp")
        )

    async def _announce(
        self,
        st: PlatformState,
        body: Mapping[str, Any],
        trigger: str,
        applied: list[tuple[dict[str, Any], list[str]]],
        deleted: list[tuple[Kind, str]],
        paused: bool,
        decision: AutoscalerDecision,
        generation: int,
    ) -> None:
        prev_auto = condition(st.last_status, AUTOSCALER_AVAILABLE)
        auto_status = decision.condition[0]
        if prev_auto is None or prev_auto.get("status") != auto_status:
            if auto_status == "False":
                await self.events.record(body, WARNING, "AutoscalerFallback", decision.condition[2])
            elif prev_auto is not None and prev_auto.get("status") == "False":
                await self.events.record(
                    body, NORMAL, "AutoscalerSwitched", f"{KEDA_GROUP_VERSION} found: using KEDA"
                )
        if paused or not (applied or deleted):
            return
        missing = [m for m, why in applied if why == ["<missing>"]]
        names_ = ", ".join(f"{m['kind']}/{m['metadata']['name']}" for m, _ in applied[:5])
        more = f" and {len(applied) - 5} more" if len(applied) > 5 else ""
        observed = st.applied_generation
        if observed is None:
            observed = int((st.last_status or {}).get("observedGeneration", 0)) or None
        if trigger == "create" or (observed is None and len(missing) == len(applied)):
            await self.events.record(body, NORMAL, "Created", f"created {len(applied)} children")
        elif observed != generation or trigger in ("keda", "update"):
            msg = f"applied {len(applied)}, deleted {len(deleted)} children for generation {generation}"
            await self.events.record(body, NORMAL, "Applied", msg + (f": {names_}{more}" if applied else ""))
        else:
            for m, why in applied:
                metrics.DRIFT_REPAIRS.labels(kind=m["kind"]).inc()
                log.info("drift on %s %s: %s", m["kind"], m["metadata"]["name"], ", ".join(why[:5]))
            reasons = "; ".join(f"{m['metadata']['name']}: {', '.join(w[:3])}" for m, w in applied[:3])
            await self.events.record(body, NORMAL, "DriftRepaired", f"restored {names_}{more} ({reasons})")

    def _desired(
        self, st: PlatformState, platform: Platform, keda_ok: bool
    ) -> dict[ChildKey, dict[str, Any]]:
        """Rendered and adopted children, cached per (uid, generation, KEDA availability)."""
        ident = (str(platform.uid), int(platform.generation or 0), keda_ok)
        if st.desired is None or st.desired_for != ident:
            owner = Owner(names.API_VERSION, names.KIND, platform.name, platform.namespace, str(platform.uid))
            rendered = [adopt(m, owner) for m in render(platform, keda_available=keda_ok)]
            for m in rendered:
                if m.get("kind") not in KINDS_BY_KIND:
                    raise ReconcileError(
                        f"renderer produced an unmanaged kind {m.get('kind')!r}", permanent=True
                    )
            st.desired = {key_of(m): m for m in rendered}
            st.autoscalers = dict(autoscalers(platform, keda_available=keda_ok))
            st.desired_for = ident
            st.clean = {}
            st.readiness = {}
        return st.desired

    def _observe(
        self,
        key: PlatformKey,
        st: PlatformState,
        generation: int,
        paused: bool,
        decision: AutoscalerDecision | None,
        writes: int,
        error: tuple[str, str] | None = None,
    ) -> Observation:
        desired = st.desired or {}
        entries = self.cache.entries_of(key)
        comps = []
        stuck = []
        for ckey, want in desired.items():
            if ckey[0] != DEPLOYMENT.kind:
                continue
            entry = entries.get(ckey)
            seen = (entry[0], entry[1]) if entry is not None else None
            known = st.readiness.get(ckey)
            if known is None or known[0] != seen:
                live = decode(entry) if entry is not None else None
                component = str(want["metadata"].get("labels", {}).get(names.LABEL_COMPONENT, ""))
                state = deployment_state(want, live, st.autoscalers.get(component, ""))
                known = (seen, state, deadline_exceeded(live))
                st.readiness[ckey] = known
            comps.append(known[1])
            if known[2]:
                stuck.append(ckey[1])
        missing = [f"{k}/{n}" for (k, n) in desired if (k, n) not in entries]
        return Observation(
            generation=generation,
            components=comps,
            missing=missing,
            stuck=stuck,
            writes=writes,
            paused=paused,
            autoscaler=decision,
            error=error,
        )

    async def _write_status(self, st: PlatformState, obs: Observation) -> bool:
        """Patch the status subresource only when it changed; True when written."""
        old = st.last_status if st.last_status is not None else st.body.get("status")
        new = compute_status(old, obs)
        if not status_changed(old, new):
            return False
        meta = st.body["metadata"]
        try:
            await self.kube.request(
                "PATCH",
                CR_KIND.path(str(meta["namespace"]), str(meta["name"])) + "/status",
                body={"status": new},
                content_type="application/merge-patch+json",
            )
        except KubeError as exc:
            if exc.not_found:
                return False  # the platform was deleted meanwhile
            raise
        metrics.STATUS_WRITES.inc()
        st.last_status = new
        st.status_written_at = time.monotonic()
        return True


def _wants_keda(platform: Platform) -> bool:
    return any(c.autoscaling.keda is not None for _, c in platform.spec.consumers.items())


__all__ = [
    "CHILD_KINDS",
    "KINDS_BY_KIND",
    "PlatformKey",
    "PlatformStore",
    "ReconcileError",
    "Reconciler",
    "is_paused",
    "owned_by",
    "platform_mark",
]
