"""A thin, counted Kubernetes REST client on top of the `kubernetes` package's ApiClient.

The operator needs only a handful of verbs on a handful of kinds, so it speaks plain REST paths
(one request each, easy to count) instead of the generated per-kind APIs or DynamicClient's discovery.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

MUTATING_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# (connect, read) seconds: a hung request must not hold a platform's lock forever.
REQUEST_TIMEOUT = (5.0, 30.0)


class KubeError(Exception):
    """A non-2xx answer from the API server."""

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

    def path(self, namespace: str, name: str | None = None) -> str:
        """The REST path of the collection in namespace, or of one object."""
        root = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        p = f"{root}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{p}/{quote(name, safe='')}" if name else p


RequestHook = Callable[[str, str], None]  # (verb, plural) after every request


class Kube:
    """REST calls through the `kubernetes` client's connection pool, auth and TLS settings."""

    def __init__(self, api: k8s.ApiClient, on_request: RequestHook | None = None) -> None:
        self.api = api
        self._on_request = on_request
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}

    @classmethod
    def from_environment(cls, on_request: RequestHook | None = None) -> Kube:
        """In-cluster config when running in a pod, else KUBECONFIG / ~/.kube/config."""
        configuration = k8s.Configuration()
        # Handlers run in a thread pool: give each worker its own pooled connection.
        configuration.connection_pool_maxsize = 32
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(k8s.ApiClient(configuration), on_request=on_request)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """One REST call; returns the decoded JSON answer or raises KubeError."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        # The REST layer serializes dict bodies for JSON and for +yaml types (JSON is valid YAML).
        serialized = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        url, header_params = serialized[1], serialized[2]
        self._count(method, path)
        try:
            resp = self.api.call_api(
                method, url, header_params=header_params, body=body, _request_timeout=REQUEST_TIMEOUT
            )
        except urllib3.exceptions.HTTPError as exc:  # timeouts, refused or reset connections
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        data = resp.read()  # type: ignore[no-untyped-call]
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        if not 200 <= resp.status <= 299:
            raise KubeError(resp.status, str(resp.reason or ""), text)
        if not text:
            return {}
        decoded = json.loads(text)
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def _count(self, method: str, path: str) -> None:
        # The plural is the path segment after the namespace (or the last segment for discovery).
        parts = [p for p in path.split("/") if p]
        plural = parts[parts.index("namespaces") + 2] if "namespaces" in parts[:-2] else parts[-1]
        key = f"{method} {plural}"
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1
        if self._on_request is not None:
            self._on_request(method, plural)

    def mutating_requests(self) -> int:
        """How many POST/PUT/PATCH/DELETE requests this client has sent."""
        with self._lock:
            return sum(n for k, n in self.requests.items() if k.split(" ", 1)[0] in MUTATING_VERBS)
