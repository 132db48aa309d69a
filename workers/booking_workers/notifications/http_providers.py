"""SMS and push through HTTP provider APIs (httpx), with one error mapping for both.

2xx delivered; 429 and 5xx transient (Retry-After honoured); any other 4xx permanent; timeouts and
connection failures transient. Response bodies are never logged: providers echo numbers back.
"""

from __future__ import annotations

from typing import Any

import httpx

from booking_workers.notifications.errors import PermanentDeliveryError, TransientDeliveryError
from booking_workers.notifications.templates import Rendered


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date; the backoff schedule applies instead


def raise_for_provider_status(response: httpx.Response) -> None:
    """Map a provider's HTTP answer to delivered (return) or a DeliveryError."""
    code = response.status_code
    if 200 <= code < 300:
        return
    if code == 429:
        raise TransientDeliveryError("http_429", retry_after=_retry_after(response))
    if code >= 500:
        raise TransientDeliveryError(f"http_{code}", retry_after=_retry_after(response))
    raise PermanentDeliveryError(f"http_{code}")


class HttpProvider:
    """POSTs JSON to a provider endpoint; one client (connection pool) per worker process."""

    def __init__(self, *, url: str, timeout: float, client: httpx.Client | None = None) -> None:
        self.url = url
        self.client = client or httpx.Client(timeout=httpx.Timeout(timeout))

    def post(self, payload: dict[str, Any], *, idempotency_key: str) -> None:
        """Send one request or raise a DeliveryError."""
        try:
            # Providers that support it use the key to drop our own retries of an accepted request.
            response = self.client.post(self.url, json=payload, headers={"Idempotency-Key": idempotency_key})
        except httpx.TimeoutException:
            raise TransientDeliveryError("timeout") from None
        except httpx.TransportError:
            raise TransientDeliveryError("connection") from None
        raise_for_provider_status(response)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class SmsProvider(HttpProvider):
    """Text messages: `{"to": phone, "body": text}`."""

    def send(self, *, to: str | None, rendered: Rendered, notification_id: str) -> None:
        """Deliver one SMS or raise a DeliveryError."""
        if not to:
            raise PermanentDeliveryError("no_address")
        self.post(
            {"to": to, "body": rendered.body, "reference": notification_id}, idempotency_key=notification_id
        )


class PushProvider(HttpProvider):
    """Push notifications: `{"token": device token, "title": ..., "body": ...}`."""

    def send(self, *, to: str | None, rendered: Rendered, notification_id: str) -> None:
        """Deliver one push or raise a DeliveryError."""
        if not to:
            raise PermanentDeliveryError("no_address")
        self.post(
            {"token": to, "title": rendered.subject, "body": rendered.body, "reference": notification_id},
            idempotency_key=notification_id,
        )
