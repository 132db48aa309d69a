"""Run-time detection of KEDA's ScaledObject API, cached with a recheck interval.

KEDA is optional: without its CRD the operator renders a CPU HPA instead of a ScaledObject and says
so in a condition, and when the CRD appears later the next check switches every platform over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from booking_operator import metrics
from booking_operator.client import Kube, KubeError

log = logging.getLogger(__name__)

KEDA_GROUP_VERSION = "keda.sh/v1alpha1"
SCALEDOBJECTS = "scaledobjects"


@dataclass(frozen=True)
class AutoscalerDecision:
    """What to render and what to report, given KEDA's availability and what the CR asks for."""

    keda_available: bool
    wants_keda: bool

    @property
    def mode(self) -> str:
        """The printer column: keda, hpa-fallback, hpa or none."""
        if self.wants_keda:
            return "keda" if self.keda_available else "hpa-fallback"
        return "hpa"

    @property
    def condition(self) -> tuple[str, str, str]:
        """(status, reason, message) of the AutoscalerAvailable condition."""
        if self.keda_available:
            return "True", "KedaAvailable", f"{KEDA_GROUP_VERSION} ScaledObject API is served"
        if not self.wants_keda:
            return "True", "KedaNotRequired", "no component asks for KEDA; CPU HPAs only"
        return (
            "False",
            "KedaNotInstalled",
            f"{KEDA_GROUP_VERSION} scaledobjects is not served by the API server; "
            "KEDA-configured components use a CPU HorizontalPodAutoscaler until KEDA is installed",
        )


def decide(*, keda_available: bool, wants_keda: bool) -> AutoscalerDecision:
    """The fallback decision (pure)."""
    return AutoscalerDecision(keda_available=keda_available, wants_keda=wants_keda)


class KedaDetector:
    """Asks discovery for keda.sh/v1alpha1 at most once per recheck interval."""

    def __init__(
        self, kube: Kube, recheck_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._kube = kube
        self._recheck = recheck_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._available: bool | None = None
        self._checked_at = float("-inf")

    @property
    def known(self) -> bool | None:
        """The cached answer without asking (None before the first check)."""
        return self._available

    async def available(self, *, force: bool = False) -> bool:
        """Whether ScaledObjects can be created; re-asks the API server when the cache is stale."""
        async with self._lock:
            now = self._clock()
            if force or self._available is None or now - self._checked_at >= self._recheck:
                self._available = await self._probe(previous=self._available)
                self._checked_at = now
            return self._available

    async def _probe(self, previous: bool | None) -> bool:
        try:
            doc = await self._kube.request("GET", f"/apis/{KEDA_GROUP_VERSION}")
        except KubeError as exc:
            if exc.status in (404, 403):
                found = False
            else:
                # A flaky discovery call must not flip a working platform back to HPAs.
                log.warning(
                    "KEDA discovery failed; keeping the previous answer", extra={"status": exc.status}
                )
                return bool(previous)
        else:
            found = any(r.get("name") == SCALEDOBJECTS for r in doc.get("resources", []))
        if found != previous:
            log.info("KEDA ScaledObject API %s", "found" if found else "not found", extra={"outcome": found})
        metrics.KEDA_AVAILABLE.set(1 if found else 0)
        return found
