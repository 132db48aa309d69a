"""Delivery errors: transient ones are retried with backoff, permanent ones never."""

from __future__ import annotations


class DeliveryError(Exception):
    """A channel could not deliver; `error_class` is a short PHI-free code for records and metrics."""

    transient = False

    def __init__(self, error_class: str, *, retry_after: float | None = None) -> None:
        super().__init__(error_class)
        self.error_class = error_class
        self.retry_after = retry_after


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: timeouts, connection failures, 429, 5xx, SMTP 4xx."""

    transient = True


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: 4xx from a provider, SMTP 5xx, a missing address."""
