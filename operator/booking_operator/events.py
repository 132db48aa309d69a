"""Kubernetes Events on the BookingPlatform: creation, drift repair, autoscaler fallback, errors.

Posted with the operator's own client rather than kopf.info, because the coordinator's passes run
outside the CR's handler context where kopf's event queue lives. Repeats of one event are suppressed
for a while so a resync never turns into an event storm.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from booking_operator.client import Kube, KubeError
from booking_operator.status import now_rfc3339

log = logging.getLogger(__name__)

COMPONENT = "booking-operator"
NORMAL = "Normal"
WARNING = "Warning"


class EventRecorder:
    """Posts core/v1 Events about one object kind; failures are logged, never raised."""

    def __init__(self, kube: Kube, repeat_after: float = 600.0) -> None:
        self._kube = kube
        self._repeat_after = repeat_after
        self._seen: dict[tuple[str, str, str], float] = {}
        self._instance = os.environ.get("HOSTNAME", "local")

    async def record(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post one Event about obj (a BookingPlatform body)."""
        meta = obj.get("metadata", {})
        uid = str(meta.get("uid", ""))
        key = (uid, reason, message)
        now = time.monotonic()
        if now - self._seen.get(key, float("-inf")) < self._repeat_after:
            return
        if len(self._seen) > 10_000:  # forget expired keys now and then, so the map stays bounded
            self._seen = {k: t for k, t in self._seen.items() if now - t < self._repeat_after}
        self._seen[key] = now
        namespace = str(meta.get("namespace", "default"))
        ts = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'platform')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
        }
        log.info("event %s: %s", reason, message, extra={"namespace": namespace, "reason": reason})
        try:
            await self._kube.request(
                "POST", f"/api/v1/namespaces/{namespace}/events", body=body, content_type="application/json"
            )
        except KubeError as exc:
            log.warning("could not post an Event", extra={"reason": reason, "status": exc.status})
