"""One reconciliation of a BookingPlatform, and the repair of one drifted child.

Parse, render, adopt, compare, apply what differs, delete what is no longer rendered, report. Every
path that can write holds the platform's lock, so the CR handlers, the resync loop and the child
watches never interleave their writes for one platform.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
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
    adopt,
    key_of,
    owned_by,
    plan,
)
from booking_operator.client import Kind, Kube, KubeError
from booking_operator.drift import needs_apply, slim_managed_fields
from booking_operator.events import NORMAL, WARNING, EventRecorder
from booking_operator.keda import KEDA_GROUP_VERSION, AutoscalerDecision, KedaDetector, decide
from booking_operator.render import autoscalers, render
from booking_operator.spec import InvalidPlatformError, Platform, parse_platform
from booking_operator.status import (
    AUTOSCALER_AVAILABLE,
    Observation,
    compute_status,
    condition,
    deadline_exceeded,
    deployment_state,
    status_changed,
)

log = logging.getLogger(__name__)

PAUSED_ANNOTATION = f"{names.GROUP}/paused"
# A watch that reconnects after a gap re-lists but cannot report a deletion it missed; one resync in
# this many lists the children again, so the cache cannot stay wrong for long.
FULL_RELIST_EVERY = 10
CR_KIND = Kind(names.API_VERSION, names.KIND, names.PLURAL)
PlatformKey = tuple[str, str]  # (namespace, name)


class ReconcileError(Exception):
    """A reconciliation that failed; `permanent` when retrying cannot help (an invalid spec)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def is_paused(body: Mapping[str, Any]) -> bool:
    """The pause annotation or spec.paused."""
    ann = (body.get("metadata", {}).get("annotations") or {}).get(PAUSED_ANNOTATION, "")
    return str(ann).lower() in ("true", "1", "yes") or bool((body.get("spec") or {}).get("paused"))


def _slim(obj: Mapping[str, Any], manager: str, desired: Mapping[str, Any] | None) -> dict[str, Any]:
    """A live object as the cache keeps it: of managedFields only the few paths of ours that tell drift
    (an empty value someone removed) from an empty value the server merely did not serialise."""
    return slim_managed_fields(obj, manager, desired)


def _rv(obj: Mapping[str, Any]) -> int:
    rv = str(obj.get("metadata", {}).get("resourceVersion", ""))
    return int(rv) if rv.isdigit() else -1


@dataclass
class PlatformState:
    """What the operator remembers about one BookingPlatform between passes."""

    body: dict[str, Any]
    lock: threading.RLock = field(default_factory=threading.RLock)
    desired: dict[ChildKey, dict[str, Any]] | None = None
    # (uid, generation, KEDA available) the desired set was rendered for
    desired_for: tuple[str, int, bool] | None = None
    autoscalers: dict[str, str] = field(default_factory=dict)  # component -> hpa | keda
    live: dict[ChildKey, dict[str, Any]] = field(default_factory=dict)
    last_status: dict[str, Any] | None = None
    last_obs: Observation | None = None
    applied_generation: int | None = None
    # `live` is a cache fed by the child watches: a resync reads it instead of listing. These say which
    # kinds it was last listed for and how many resyncs have trusted it since.
    listed_kinds: tuple[str, ...] | None = None
    resyncs_since_list: int = 0
    # Child watch events wait here while a reconcile holds `lock`: a watch thread never blocks on it
    # (blocked threads would starve every other platform's handlers).
    pending: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    pending_lock: threading.Lock = field(default_factory=threading.Lock)


class PlatformStore:
    """The BookingPlatforms seen on the watch, by (namespace, name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[PlatformKey, PlatformState] = {}

    def upsert(self, body: Mapping[str, Any]) -> PlatformState:
        """Record the newest body of a platform (a new uid under the same name starts afresh)."""
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        with self._lock:
            st = self._items.get(key)
            if st is None or st.body.get("metadata", {}).get("uid") != meta.get("uid"):
                st = PlatformState(body=dict(body), last_status=dict(body.get("status") or {}) or None)
                self._items[key] = st
            elif _rv(body) >= _rv(st.body):
                st.body = dict(body)
            metrics.PLATFORMS.set(len(self._items))
            return st

    def remove(self, key: PlatformKey) -> None:
        """Forget a deleted platform."""
        with self._lock:
            self._items.pop(key, None)
            metrics.PLATFORMS.set(len(self._items))

    def get(self, key: PlatformKey) -> PlatformState | None:
        """One platform's state."""
        with self._lock:
            return self._items.get(key)

    def all_keys(self) -> list[PlatformKey]:
        """Every known platform, sorted."""
        with self._lock:
            return sorted(self._items)


@dataclass
class Outcome:
    """What one pass did."""

    writes: int = 0
    unchanged: int = 0
    status_written: bool = False


class Reconciler:
    """Reconciles platforms from the store; shared by the kopf handlers and the resync loop."""

    def __init__(self, kube: Kube, applier: Applier, keda: KedaDetector, events: EventRecorder) -> None:
        self.kube = kube
        self.applier = applier
        self.keda = keda
        self.events = events
        self.store = PlatformStore()
        metrics.watch_conditions(self.store)

    # ------------------------------------------------------------------------------ full reconcile

    def reconcile(self, key: PlatformKey, trigger: str) -> Outcome:
        """Bring every child of one platform to its rendered state and report it."""
        st = self.store.get(key)
        if st is None:
            return Outcome()
        started = time.monotonic()
        try:
            return self._reconcile_locked(st, trigger, started)
        finally:
            self._drain(st)  # child events that arrived meanwhile

    def _reconcile_locked(self, st: PlatformState, trigger: str, started: float) -> Outcome:
        with st.lock:
            try:
                out = self._reconcile(st, trigger)
            except ReconcileError:
                metrics.RECONCILES.labels(trigger=trigger, outcome="error").inc()
                raise
            except KubeError as exc:  # the status write itself failed: retry like any API error
                metrics.RECONCILES.labels(trigger=trigger, outcome="error").inc()
                metrics.ERRORS.labels(reason=f"Api{exc.status}").inc()
                raise ReconcileError(str(exc)) from exc
            finally:
                metrics.RECONCILE_SECONDS.labels(trigger=trigger).observe(time.monotonic() - started)
            metrics.RECONCILES.labels(trigger=trigger, outcome="ok").inc()
            return out

    def _reconcile(self, st: PlatformState, trigger: str) -> Outcome:
        body = st.body
        meta = body.get("metadata", {})
        if meta.get("deletionTimestamp"):
            return Outcome()
        generation = int(meta.get("generation", 0))
        try:
            platform = parse_platform(body)
        except InvalidPlatformError as exc:
            metrics.ERRORS.labels(reason="InvalidSpec").inc()
            obs = Observation(generation=generation, error=("InvalidSpec", str(exc)[:1000]))
            self._write_status(st, obs)
            self.events.record(body, WARNING, "InvalidSpec", str(exc))
            raise ReconcileError(str(exc), permanent=True) from exc

        paused = is_paused(body)
        keda_ok = self.keda.available()
        decision = decide(keda_available=keda_ok, wants_keda=_wants_keda(platform))
        try:
            desired = self._desired(st, platform, keda_ok)
            kinds = [k for k in CHILD_KINDS if keda_ok or not k.api_version.startswith("keda.sh/")]
            live = self._live_children(st, platform, kinds, trigger)
            p = plan(desired.values(), live, str(platform.uid), self.applier.field_manager)
            if not paused and p.writes:
                for obj in self.applier.execute(p, platform.namespace):
                    k = key_of(obj, str(obj.get("kind")))
                    live[k] = _slim(obj, self.applier.field_manager, desired.get(k))
                for kind, name in p.delete:
                    live.pop((kind.kind, name), None)
        except KubeError as exc:
            if exc.not_found and keda_ok and not self.keda.available(force=True):
                # KEDA's CRDs went away since the last discovery: render the fallback right now.
                return self._reconcile(st, trigger)
            if exc.namespace_terminating:
                return Outcome()  # the platform goes with its namespace; nothing to report
            metrics.ERRORS.labels(reason=f"Api{exc.status}").inc()
            error = ("ApplyFailed", exc.message[:1000] or str(exc))
            obs = self._observe(st, generation, paused, decision, 0, error=error)
            try:
                self._write_status(st, obs)
            except KubeError:
                log.warning("could not write the status either", extra={"namespace": platform.namespace})
            self.events.record(body, WARNING, "ApplyFailed", f"{exc.status}: {exc.message}")
            raise ReconcileError(str(exc)) from exc

        st.live = live
        writes = 0 if paused else p.writes
        self._announce(st, body, trigger, p.apply, p.delete, paused, decision, generation)
        obs = self._observe(st, generation, paused, decision, writes)
        written = self._write_status(st, obs)
        if not paused:
            st.applied_generation = generation
        return Outcome(writes=writes, unchanged=p.unchanged, status_written=written)

    def _announce(
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
                self.events.record(body, WARNING, "AutoscalerFallback", decision.condition[2])
            elif prev_auto is not None and prev_auto.get("status") == "False":
                self.events.record(
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
            self.events.record(body, NORMAL, "Created", f"created {len(applied)} children")
        elif observed != generation or trigger in ("keda", "update"):
            msg = f"applied {len(applied)}, deleted {len(deleted)} children for generation {generation}"
            self.events.record(body, NORMAL, "Applied", msg + (f": {names_}{more}" if applied else ""))
        else:
            for m, _ in applied:
                metrics.DRIFT_REPAIRS.labels(kind=m["kind"]).inc()
            self.events.record(body, NORMAL, "DriftRepaired", f"restored {names_}{more} on {trigger}")

    # --------------------------------------------------------------------------------- child drift

    def repair_child(self, kind: str, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """React to a watch event on a labelled child: restore it when it drifted; True if written now.

        When the platform is busy (a reconcile holds its lock) the event is queued and the lock holder
        handles it before letting go, so the calling watch thread returns at once.
        """
        meta = obj.get("metadata", {})
        part_of = (meta.get("labels") or {}).get(names.LABEL_PART_OF)
        st = self.store.get((str(meta.get("namespace")), str(part_of)))
        if st is None:
            return False
        with st.pending_lock:
            st.pending.append((kind, event_type, dict(obj)))
        return self._drain(st) > 0

    def _drain(self, st: PlatformState) -> int:
        """Handle queued child events if nobody else holds the platform; returns repairs made."""
        repaired = 0
        while True:
            if not st.lock.acquire(blocking=False):
                return repaired  # the holder drains before it releases
            try:
                repaired += self._drain_locked(st)
            finally:
                st.lock.release()
            with st.pending_lock:
                if not st.pending:
                    return repaired

    def _drain_locked(self, st: PlatformState) -> int:
        repaired = 0
        while True:
            with st.pending_lock:
                batch, st.pending = st.pending, []
            if not batch:
                return repaired
            deployments_seen = False
            for kind, event_type, obj in batch:
                repaired += self._child_event(st, kind, event_type, obj)
                deployments_seen = deployments_seen or kind == DEPLOYMENT.kind
            if deployments_seen and st.last_obs is not None:
                # Readiness moved: one status refresh per batch, written only if it changed.
                last = st.last_obs
                obs = self._observe(st, last.generation, last.paused, last.autoscaler, 0, error=last.error)
                try:
                    self._write_status(st, obs)
                except KubeError as exc:
                    log.warning("status refresh failed", extra={"status": exc.status})

    def _child_event(self, st: PlatformState, kind: str, event_type: str | None, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        ckey = (kind, str(meta.get("name")))
        if event_type == "DELETED":
            known = st.live.get(ckey, {}).get("metadata", {}).get("uid")
            if known and known != meta.get("uid"):
                return False  # an older incarnation; the current one is already there
            st.live.pop(ckey, None)
        elif _rv(obj) >= _rv(st.live.get(ckey, {})):
            st.live[ckey] = _slim(obj, self.applier.field_manager, (st.desired or {}).get(ckey))
        else:
            # A stale event (older than what our own apply returned): judge the newest copy.
            obj = st.live[ckey]
        return self._repair(st, kind, ckey, event_type, obj)

    def _repair(
        self, st: PlatformState, kind: str, ckey: ChildKey, event_type: str | None, obj: Mapping[str, Any]
    ) -> bool:
        body = st.body
        if st.desired is None or body.get("metadata", {}).get("deletionTimestamp") or is_paused(body):
            return False  # no reconcile yet (it will create everything), or being deleted, or paused
        uid = str(body["metadata"].get("uid"))
        want = st.desired.get(ckey)
        if want is None:
            return False  # not ours to restore (e.g. the HPA KEDA creates, labelled like its ScaledObject)
        if event_type == "DELETED":
            # The garbage collector deletes children right after their owner: restore only if it lives.
            try:
                owner = self.applier.get(
                    CR_KIND, str(body["metadata"]["namespace"]), str(body["metadata"]["name"])
                )
            except KubeError:
                return False
            if (
                owner is None
                or owner["metadata"].get("uid") != uid
                or owner["metadata"].get("deletionTimestamp")
            ):
                return False
            why = ["<deleted>"]
        else:
            why = needs_apply(want, obj, self.applier.field_manager)
            if not why:
                return False
            if not owned_by(obj, uid) and obj.get("metadata", {}).get("ownerReferences"):
                log.info("re-adopting %s %s", kind, ckey[1], extra={"kind": kind})
        log.info("drift on %s %s: %s", kind, ckey[1], ", ".join(why[:5]), extra={"kind": kind})
        try:
            applied = self.applier.apply(want)
        except KubeError as exc:
            if exc.namespace_terminating:
                return False
            metrics.ERRORS.labels(reason=f"Api{exc.status}").inc()
            self.events.record(body, WARNING, "RepairFailed", f"{kind}/{ckey[1]}: {exc.status} {exc.message}")
            return False
        st.live[ckey] = _slim(applied, self.applier.field_manager, want)
        metrics.DRIFT_REPAIRS.labels(kind=kind).inc()
        self.events.record(body, NORMAL, "DriftRepaired", f"restored {kind}/{ckey[1]} ({', '.join(why[:3])})")
        return True

    # ------------------------------------------------------------------------------------- helpers

    def _live_children(
        self, st: PlatformState, platform: Platform, kinds: list[Kind], trigger: str
    ) -> dict[ChildKey, dict[str, Any]]:
        """The platform's children: on a resync, the cache the child watches keep current (no request);
        otherwise, and every FULL_RELIST_EVERY resyncs, one LIST per kind."""
        listed_for = tuple(k.kind for k in kinds)
        if (
            trigger == "resync"
            and st.listed_kinds == listed_for
            and st.resyncs_since_list < FULL_RELIST_EVERY
        ):
            st.resyncs_since_list += 1
            metrics.CACHE_READS.inc()
            return dict(st.live)
        listed = self.applier.list_children(platform.namespace, platform.name, kinds)
        st.listed_kinds, st.resyncs_since_list = listed_for, 0
        desired = st.desired or {}
        return {k: _slim(v, self.applier.field_manager, desired.get(k)) for k, v in listed.items()}

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
        return st.desired

    def _observe(
        self,
        st: PlatformState,
        generation: int,
        paused: bool,
        decision: AutoscalerDecision | None,
        writes: int,
        error: tuple[str, str] | None = None,
    ) -> Observation:
        desired = st.desired or {}
        comps = []
        stuck = []
        for key, want in desired.items():
            if key[0] != DEPLOYMENT.kind:
                continue
            live = st.live.get(key)
            component = str(want["metadata"].get("labels", {}).get(names.LABEL_COMPONENT, ""))
            comps.append(deployment_state(want, live, st.autoscalers.get(component, "")))
            if deadline_exceeded(live):
                stuck.append(key[1])
        missing = [f"{k}/{n}" for (k, n) in desired if (k, n) not in st.live]
        obs = Observation(
            generation=generation,
            components=comps,
            missing=missing,
            stuck=stuck,
            writes=writes,
            paused=paused,
            autoscaler=decision,
            error=error,
        )
        st.last_obs = obs
        return obs

    def _write_status(self, st: PlatformState, obs: Observation) -> bool:
        """Patch the status subresource only when it changed; True when written."""
        old = st.last_status if st.last_status is not None else st.body.get("status")
        new = compute_status(old, obs)
        if not status_changed(old, new):
            return False
        meta = st.body["metadata"]
        try:
            self.kube.request(
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
        return True

    def reconcile_all(self, trigger: str) -> None:
        """Reconcile every known platform (errors are logged; the next pass retries)."""
        for key in self.store.all_keys():
            try:
                self.reconcile(key, trigger)
            except ReconcileError as exc:
                log.warning("reconcile of %s failed: %s", key[1], exc, extra={"namespace": key[0]})
            except Exception:
                metrics.ERRORS.labels(reason="Unexpected").inc()
                log.exception("reconcile of %s crashed", key[1], extra={"namespace": key[0]})


def _wants_keda(platform: Platform) -> bool:
    return any(c.autoscaling.keda is not None for _, c in platform.spec.consumers.items())


__all__ = ["KINDS_BY_KIND", "PlatformKey", "PlatformStore", "ReconcileError", "Reconciler", "is_paused"]
