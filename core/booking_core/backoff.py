"""The one backoff rule of every retry loop: exponential growth, a cap, and jitter.

Used by the consumers' batch retries, the outbox relay's failed passes and the notification channels'
retry policy. The jitter draws the delay from the upper part of its range, so the retries of a burst
(many messages, several replicas) do not arrive together.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# 2**30 times any base is far beyond every cap: past it the exponent only risks overflow.
MAX_EXPONENT = 30


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.5,
    rand: Callable[[], float] = random.random,
) -> float:
    """The wait before retry number `attempt` (1-based): `base * 2**(attempt-1)` capped at `cap`,
    then shortened by up to `jitter` of itself (0: exact; 0.5: anywhere in the upper half).
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter is a fraction between 0 and 1")
    full: float = min(cap, base * 2.0 ** min(max(attempt - 1, 0), MAX_EXPONENT))
    return full * (1.0 - jitter * rand())
