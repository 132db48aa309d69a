"""Rate limits per client address and per token subject, with 429 and Retry-After (the `limits` library).

Three budgets, each a sliding window counter:
- per client address, checked before anything else runs;
- failed authentications per client address, much tighter: once a client has spent it, its requests
  get 429 until the window moves on, so tokens cannot be guessed at line rate;
- per token subject, checked once the token is verified (a dependency), so one account cannot take the
  service from everyone behind the same address, and a forged `sub` counts against nobody.
The storage is Redis when BOOKING_REDIS_URL is set (every replica shares the counts), process memory
otherwise. Keys hold the client address or a hash of the subject, never a patient id. If the storage
fails, requests are let through with a warning: an outage of the limiter must not take bookings down.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_api.errors import ApiError, error_body
from booking_api.settings import ApiSettings

log = logging.getLogger(__name__)

# Probes and scrapes come from the platform itself, often many per second.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REFUSED = Counter("booking_api_rate_limited_total", "Requests answered 429, by budget", ["budget"])


class RateLimitedError(ApiError):
    """429: the caller spent a rate-limit budget."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many requests, retry later", headers={"Retry-After": str(retry_after)})


class EdgeLimiter:
    """The three budgets over one storage; every method answers a Retry-After in seconds, or None."""

    def __init__(self, settings: ApiSettings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.per_client = parse(settings.rate_limit_per_client)
        self.per_subject = parse(settings.rate_limit_per_subject)
        self.auth_failures = parse(settings.rate_limit_auth_failures)
        self.storage = _storage(settings.redis_url, settings.rate_limit_key_prefix)
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)

    async def _retry_after(self, item: RateLimitItem, *ids: str) -> int:
        stats = await self.strategy.get_window_stats(item, *ids)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit(self, budget: str, item: RateLimitItem, *ids: str) -> int | None:
        """Spend one from the budget; the wait when it was already spent."""
        try:
            if await self.strategy.hit(item, budget, *ids):
                return None
            REFUSED.labels(budget=budget).inc()
            return await self._retry_after(item, budget, *ids)
        except Exception as exc:  # the storage is down: let the request through
            log.warning("rate limit storage unavailable", extra={"reason": type(exc).__name__})
            return None

    async def spent(self, budget: str, item: RateLimitItem, *ids: str) -> int | None:
        """The wait when the budget is spent, without spending from it."""
        try:
            if await self.strategy.test(item, budget, *ids):
                return None
            REFUSED.labels(budget=budget).inc()
            return await self._retry_after(item, budget, *ids)
        except Exception as exc:
            log.warning("rate limit storage unavailable", extra={"reason": type(exc).__name__})
            return None

    async def charge(self, budget: str, item: RateLimitItem, *ids: str) -> None:
        """Spend one from the budget, whatever is left."""
        try:
            await self.strategy.hit(item, budget, *ids)
        except Exception as exc:
            log.warning("rate limit storage unavailable", extra={"reason": type(exc).__name__})


def _storage(redis_url: str | None, key_prefix: str) -> Storage:
    if not redis_url:
        storage = storage_from_string("async+memory://")
    else:
        # redis-py's asyncio client (already a dependency), not coredis.
        storage = storage_from_string(f"async+{redis_url}", implementation="redispy", key_prefix=key_prefix)
    assert isinstance(storage, Storage)  # an "async+" scheme always gives an asyncio storage
    return storage


def subject_key(actor: str) -> str:
    """A storage key for the token's subject that does not reveal it (subjects are patient ids)."""
    return hashlib.sha256(actor.encode()).hexdigest()[:32]


def client_address(scope: Scope) -> str:
    """The client's address (after ProxyHeadersMiddleware believed a trusted proxy)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def admit_subject(request: Request, actor: str) -> None:
    """Remember the verified caller for the access audit and spend from its budget; 429 past it."""
    request.state.actor = actor
    limiter: EdgeLimiter | None = getattr(request.app.state, "edge_limiter", None)
    if limiter is None or not limiter.enabled:
        return
    wait = await limiter.hit("subject", limiter.per_subject, subject_key(actor))
    if wait is not None:
        raise RateLimitedError(wait)


class RateLimitMiddleware:
    """Per-client budget and failed-authentication budget, before the app; counts 401s after it."""

    def __init__(self, app: ASGIApp, *, limiter: EdgeLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limiter.enabled or str(scope.get("path", "")) in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        lim, client = self.limiter, client_address(scope)
        wait = await lim.spent("auth_failures", lim.auth_failures, client)
        if wait is None:
            wait = await lim.hit("client", lim.per_client, client)
        if wait is not None:
            await _too_many(send, wait)
            return
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watching_send)
        if status == 401:
            await lim.charge("auth_failures", lim.auth_failures, client)


async def _too_many(send: Send, retry_after: int) -> None:
    body = json.dumps(error_body("rate_limited", "too many requests, retry later")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
