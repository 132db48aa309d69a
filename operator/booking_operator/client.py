"""A thin, counted, asynchronous Kubernetes REST client on kopf's event loop.

The operator needs a handful of verbs on a handful of kinds, so it speaks plain REST paths (one request
each, easy to count) over aiohttp, with the connection kopf's login produced. The `kubernetes` package is
not used: its generated models alone cost ~17 MiB of RSS.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

MUTATING_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A hung request must not hold a platform forever.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30.0, sock_connect=5.0)


class KubeError(Exception):
    """A non-2xx answer from the API server (status 0: no answer at all)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        self.status = status
        self.reason = reason
        self.body = body
        super().__init__(f"{status} {reason}: {self.message}")

    @property
    def message(self) -> str:
        """The Status message the API server sent, or the raw body."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return self.body[:500]
        return str(data.get("message", self.body[:500])) if isinstance(data, dict) else self.body[:500]

    @property
    def not_found(self) -> bool:
        """True for 404."""
        return self.status == 404

    @property
    def namespace_terminating(self) -> bool:
        """True when the namespace is being deleted (nothing may be created in it any more)."""
        return self.status == 403 and "being terminated" in self.message


@dataclass(frozen=True)
class Kind:
    """One resource type the operator handles, addressed by REST path."""

    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        """The API group ('' for the core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def root(self) -> str:
        """/api/v1 or /apis/<group>/<version>."""
        return f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """The REST path of the collection in namespace (every namespace for None), or of one object."""
        if namespace is None:
            return f"{self.root}/{self.plural}"
        p = f"{self.root}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{p}/{quote(name, safe='')}" if name else p


RequestHook = Callable[[str, str], None]  # (verb, plural) after every request
Login = Callable[[], kopf.ConnectionInfo]


class Kube:
    """REST calls through one aiohttp session built like kopf's own from a kopf.ConnectionInfo."""

    def __init__(self, login: Login, on_request: RequestHook | None = None) -> None:
        self._login = login
        self._on_request = on_request
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self.requests: dict[str, int] = {}

    def _connect(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            info = self._login()
            self._server = info.server.rstrip("/")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
                headers=info.as_http_headers(),
                trust_env=info.trust_env,
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """One REST call; returns the decoded JSON answer or raises KubeError."""
        for attempt in (1, 2):
            session = self._connect()
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                # JSON is valid YAML, so apply-patch+yaml bodies are sent as JSON too.
                data = json.dumps(body, separators=(",", ":"))
                headers["Content-Type"] = content_type or "application/json"
            self._count(method, path)
            try:
                url = self._server + path
                async with session.request(
                    method, url, params=query, data=data, headers=headers, timeout=REQUEST_TIMEOUT
                ) as resp:
                    text = await resp.text(errors="replace")
                    status, reason = resp.status, str(resp.reason or "")
            except (aiohttp.ClientError, TimeoutError) as exc:  # refused, reset, timed out
                raise KubeError(0, type(exc).__name__, str(exc)) from exc
            if status == 401 and attempt == 1:
                await self.close()  # a rotated token: log in again once
                continue
            if not 200 <= status <= 299:
                raise KubeError(status, reason, text)
            if not text:
                return {}
            decoded = json.loads(text)
            return decoded if isinstance(decoded, dict) else {"items": decoded}
        raise AssertionError("unreachable")

    async def stream(self, path: str, query: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request, until the server ends it (not counted: it is a cache feed)."""
        session = self._connect()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=None)
        try:
            async with session.get(
                self._server + path, params=query, headers={"Accept": "application/json"}, timeout=timeout
            ) as resp:
                if resp.status == 401:
                    await self.close()
                if not 200 <= resp.status <= 299:
                    raise KubeError(resp.status, str(resp.reason or ""), await resp.text(errors="replace"))
                # Split lines ourselves: aiohttp's line reader refuses lines over 64 KiB, and one watch
                # event is one line as long as its object.
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from exc

    def _count(self, method: str, path: str) -> None:
        # The plural is the path segment after the namespace (or the last segment for discovery).
        parts = [p for p in path.split("/") if p]
        plural = parts[parts.index("namespaces") + 2] if "namespaces" in parts[:-2] else parts[-1]
        key = f"{method} {plural}"
        self.requests[key] = self.requests.get(key, 0) + 1
        if self._on_request is not None:
            self._on_request(method, plural)

    def mutating_requests(self) -> int:
        """How many POST/PUT/PATCH/DELETE requests this client has sent."""
        return sum(n for k, n in self.requests.items() if k.split(" ", 1)[0] in MUTATING_VERBS)
