"""One informer-style cache of every labelled child, by owning platform, fed by one watch per kind.

Each kind is listed once and then watched (with bookmarks, so reconnects resume where they left off);
a "410 Gone" relists and replaces the kind's entries, so a deletion missed during a gap cannot linger.
Reconciles and resyncs read children from here and never LIST.

Entries are slim and compact: the object as JSON bytes without status (a Deployment keeps its own:
readiness is read from it) and, of managedFields, only the few paths of ours drift needs. Fifty platforms
of ~25 children fit in a few MiB, where parsed objects with their managedFields took ~70 MiB.

Optional kinds (KEDA's, whose CRDs may be deleted and installed at any time) use the same watch: a 404
means "not served", the entries go, and the list is retried every `retry_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from booking_operator.apply import MANAGED_BY, MANAGED_BY_LABEL, PART_OF_LABEL, ChildKey
from booking_operator.client import Kind, Kube, KubeError
from booking_operator.drift import slim_managed_fields

log = logging.getLogger(__name__)

PlatformKey = tuple[str, str]  # (namespace, name)
# Only our children, and only those that say which platform they belong to.
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},{PART_OF_LABEL}"
KEEPS_STATUS = frozenset({"Deployment"})
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
WATCH_SECONDS = 290  # the server ends each watch after this; we resume from the last resourceVersion
# (resourceVersion, uid, slim JSON without status and resourceVersion, status JSON or b"")
Entry = tuple[int, str, bytes, bytes]
DesiredLookup = Callable[[PlatformKey, ChildKey], Mapping[str, Any] | None]
# (platform, child, event type: ADDED, MODIFIED, DELETED, or STATUS for a change of nothing but status)
ChildSink = Callable[[PlatformKey, ChildKey, str], None]
ApiSink = Callable[[Kind, bool], None]  # (kind, served)


def rv_of(obj: Mapping[str, Any]) -> int:
    """The resourceVersion as a number (-1 when absent or not numeric)."""
    rv = str(obj.get("metadata", {}).get("resourceVersion", ""))
    return int(rv) if rv.isdigit() else -1


def owner_key(obj: Mapping[str, Any]) -> PlatformKey | None:
    """(namespace, platform) a labelled child belongs to."""
    meta = obj.get("metadata", {})
    part_of = (meta.get("labels") or {}).get(PART_OF_LABEL)
    return (str(meta.get("namespace")), str(part_of)) if part_of else None


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def slim(obj: Mapping[str, Any], kind: str, manager: str, desired: Mapping[str, Any] | None) -> bytes:
    """What the cache keeps of a live child (see the module docstring), as JSON."""
    return _compact(_slim(obj, kind, manager, desired))


def _slim(
    obj: Mapping[str, Any], kind: str, manager: str, desired: Mapping[str, Any] | None
) -> dict[str, Any]:
    out = slim_managed_fields(obj, manager, desired)
    if kind not in KEEPS_STATUS:
        out.pop("status", None)
    meta = dict(out.get("metadata") or {})
    annotations = meta.get("annotations") or {}
    if LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    out["metadata"] = meta
    out["kind"] = kind
    return out


def _entry(obj: Mapping[str, Any], kind: str, manager: str, desired: Mapping[str, Any] | None) -> Entry:
    """The slim object split in two: what drift compares, and the status (which only readiness reads);
    the resourceVersion apart, so that a status-only update leaves the first part byte-identical."""
    out = _slim(obj, kind, manager, desired)
    status = out.pop("status", None)
    meta = out["metadata"]
    meta.pop("resourceVersion", None)
    body = _compact(out)
    return (rv_of(obj), str(meta.get("uid", "")), body, _compact(status) if status is not None else b"")


def decode(e: Entry) -> dict[str, Any]:
    """A cached entry as the object it stands for."""
    obj: dict[str, Any] = json.loads(e[2])
    obj["metadata"]["resourceVersion"] = str(e[0])
    if e[3]:
        obj["status"] = json.loads(e[3])
    return obj


class ChildCache:
    """Children by platform, newest resourceVersion wins; fed by the informers and by our own applies."""

    def __init__(self, manager: str, desired: DesiredLookup = lambda p, c: None) -> None:
        self.manager = manager
        self.desired = desired
        self._items: dict[PlatformKey, dict[ChildKey, Entry]] = {}

    def children(self, platform: PlatformKey) -> dict[ChildKey, dict[str, Any]]:
        """Every cached child of a platform, decoded."""
        return {k: decode(e) for k, e in self._items.get(platform, {}).items()}

    def get(self, platform: PlatformKey, child: ChildKey) -> dict[str, Any] | None:
        """One cached child, decoded."""
        e = self._items.get(platform, {}).get(child)
        return decode(e) if e is not None else None

    def entries(self, platform: PlatformKey) -> dict[ChildKey, Entry]:
        """The cached entries of a platform, undecoded (see decode)."""
        return dict(self._items.get(platform, {}))

    def entries_of(self, platform: PlatformKey) -> Mapping[ChildKey, Entry]:
        """The cached entries of a platform, undecoded and not copied (read, do not keep)."""
        return self._items.get(platform, {})

    def keys(self, platform: PlatformKey) -> set[ChildKey]:
        """The cached children's keys of a platform (no decoding)."""
        return set(self._items.get(platform, {}))

    def put(self, obj: Mapping[str, Any], kind: str) -> str | None:
        """Store obj unless the cache holds it or a newer version already. Returns what changed: "spec"
        (anything drift may compare, or a new object), "status" (nothing but the status a Deployment
        keeps), or None (nothing a listener needs to hear of: a stale event, the echo of our own apply
        whose answer is stored already, or a change of a status the cache does not keep)."""
        platform = owner_key(obj)
        if platform is None:
            return None
        child = (kind, str(obj["metadata"]["name"]))
        entries = self._items.setdefault(platform, {})
        old = entries.get(child)
        rv, uid = rv_of(obj), str(obj["metadata"].get("uid", ""))
        if old is not None and old[1] == uid and old[0] >= rv >= 0:
            return None  # stale, or the very version our apply's answer stored
        new = _entry(obj, kind, self.manager, self.desired(platform, child))
        entries[child] = new
        if old is None or old[1:3] != new[1:3]:
            return "spec"
        return "status" if old[3] != new[3] else None

    def remove(self, obj: Mapping[str, Any], kind: str) -> bool:
        """Forget a deleted child (unless the cache already holds a newer incarnation); True if removed."""
        platform = owner_key(obj)
        if platform is None:
            return False
        child = (kind, str(obj["metadata"]["name"]))
        entries = self._items.get(platform, {})
        old = entries.get(child)
        if old is None or old[1] != str(obj["metadata"].get("uid", "")):
            return False
        del entries[child]
        if not entries:
            self._items.pop(platform, None)
        return True

    def replace(self, kind: str, objs: Iterable[Mapping[str, Any]]) -> list[tuple[PlatformKey, ChildKey]]:
        """A fresh listing of one kind: store it, drop entries of that kind it no longer has; returns the
        dropped ones (deletions a watch gap hid)."""
        seen: set[tuple[PlatformKey, ChildKey]] = set()
        for obj in objs:
            platform = owner_key(obj)
            if platform is not None:
                self.put(obj, kind)
                seen.add((platform, (kind, str(obj["metadata"]["name"]))))
        gone = [(p, c) for p, entries in self._items.items() for c in entries if c[0] == kind]
        gone = [pc for pc in gone if pc not in seen]
        for p, c in gone:
            del self._items[p][c]
            if not self._items[p]:
                del self._items[p]
        return gone

    def size(self) -> int:
        """Number of cached children."""
        return sum(len(e) for e in self._items.values())


class Informer:
    """List, then watch, one kind of child into the cache; tell the sink about every change."""

    def __init__(
        self,
        kube: Kube,
        kind: Kind,
        cache: ChildCache,
        on_child: ChildSink,
        on_api: ApiSink,
        *,
        namespace: str | None = None,
        retry_seconds: float = 5.0,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.cache = cache
        self._on_child = on_child
        self._on_api = on_api
        self._namespace = namespace
        self._retry = retry_seconds
        self.synced = asyncio.Event()  # the first listing is in the cache (or the API is not served)
        self.served: bool | None = None
        self._interrupted = False  # a request failed since the last listing
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Retry a listing now instead of at the end of the retry pause."""
        self._wake.set()

    async def run(self) -> None:
        """Forever: list, watch until the server ends the stream, resume; relist on 410."""
        while True:
            try:
                resume: str | None = await self._list()
                if self._interrupted:
                    # The kind may have gone and come back while we were not watching (a CRD deleted
                    # and installed again between two requests); listeners re-check rather than trust
                    # that nothing changed.
                    self._interrupted = False
                    self._on_api(self.kind, True)
                while resume is not None:
                    resume = await self._watch(resume)
            except KubeError as exc:
                if exc.status == 404:
                    self._set_served(False)
                    for platform, child in self.cache.replace(self.kind.kind, []):
                        self._on_child(platform, child, "DELETED")
                    self.synced.set()
                    await self._pause(self._retry)
                elif exc.status != 410:
                    log.warning("watch of %s failed: %s", self.kind.plural, exc, extra={"status": exc.status})
                    self._interrupted = self.served is not None
                    await self._pause(1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watch of %s crashed; restarting", self.kind.plural)
                self._interrupted = self.served is not None
                await self._pause(self._retry)

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _set_served(self, served: bool) -> None:
        if self.served != served:
            before, self.served = self.served, served
            if before is not None:
                self._interrupted = False  # listeners hear of it now
                self._on_api(self.kind, served)

    async def _list(self) -> str:
        items: list[dict[str, Any]] = []
        query = {"labelSelector": SELECTOR, "limit": "500"}
        while True:
            page = await self.kube.request("GET", self.kind.path(self._namespace), query=query)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            query = {**query, "continue": str(meta["continue"])}
        self._set_served(True)
        for obj in items:
            obj.setdefault("metadata", {})
        gone = self.cache.replace(self.kind.kind, items)
        first = not self.synced.is_set()
        self.synced.set()
        if not first:  # a relist: report what changed while we were not watching
            for platform, child in gone:
                self._on_child(platform, child, "DELETED")
            for obj in items:
                if (p := owner_key(obj)) is not None:
                    self._on_child(p, (self.kind.kind, str(obj["metadata"]["name"])), "MODIFIED")
        return str(meta.get("resourceVersion", ""))

    async def _watch(self, rv: str) -> str | None:
        """One watch request from rv; returns the resourceVersion to resume from, None to relist."""
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "labelSelector": SELECTOR,
            "resourceVersion": rv,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for event in self.kube.stream(self.kind.path(self._namespace), query):
            etype, obj = str(event.get("type")), event.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    return None
                raise KubeError(int(obj.get("code") or 0), str(obj.get("reason", "")), json.dumps(obj))
            rv = str(obj.get("metadata", {}).get("resourceVersion") or rv)
            if etype == "BOOKMARK":
                continue
            platform = owner_key(obj)
            if platform is None:
                continue
            child = (self.kind.kind, str(obj["metadata"]["name"]))
            if etype == "DELETED":
                if self.cache.remove(obj, self.kind.kind):
                    self._on_child(platform, child, etype)
            elif changed := self.cache.put(obj, self.kind.kind):
                self._on_child(platform, child, "STATUS" if changed == "status" else etype)
        return rv
