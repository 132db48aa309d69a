"""Retry policy for transient delivery failures: bounded attempts, exponential backoff with jitter."""

from __future__ import annotations

from dataclasses import dataclass

from booking_core.backoff import backoff_delay


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_attempts` per channel; the n-th retry waits about min * 2**(n-1), capped at max."""

    max_attempts: int = 5
    min_backoff_ms: int = 2_000
    max_backoff_ms: int = 300_000

    def exhausted(self, attempt: int) -> bool:
        """True when attempt number `attempt` (1-based) was the last one allowed."""
        return attempt >= self.max_attempts

    def backoff_ms(self, attempt: int, retry_after_s: float | None = None) -> int:
        """Delay before the attempt after `attempt`; a provider's Retry-After wins when longer."""
        delay = int(backoff_delay(attempt, base=self.min_backoff_ms, cap=self.max_backoff_ms))
        if retry_after_s is not None:
            delay = max(delay, int(retry_after_s * 1000))
        return min(delay, self.max_backoff_ms)
