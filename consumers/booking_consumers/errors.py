"""The consumers' error hierarchy, translated once by the poll loop: DLQ, retry, or crash."""

from __future__ import annotations


class ConsumerError(Exception):
    """Base of every error a handler or decoder raises on purpose."""


class InvalidMessageError(ConsumerError):
    """Permanent: the message cannot be decoded or validated, or names something we must refuse.

    `reason` is a short code (a metric label and the DLQ `x-dlq-reason` header); `detail` names the
    field or rule. Neither may contain a value from the message: they reach logs, headers and the DB.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TransientError(ConsumerError):
    """Retry the same message later with backoff (a dependency is down or not ready yet)."""
