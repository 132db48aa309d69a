"""A local dex (built by scripts/infra/dex.sh): a real OpenID Connect provider for the auth tests.

In-memory storage, so each start has fresh signing keys: `restart()` on the same port is a key rotation.
Users log in with the password grant (no browser). The API's client `pat-booking-api` trusts the patient
portal's and the staff console's clients, so their tokens carry `aud: pat-booking-api` (dex cross-client
scopes). Patients are identified by `preferred_username`; staff by `groups` ("staff", "clinic:<code>").
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from booking_testing.procs import (
    CACHE_ROOT,
    InfraError,
    Server,
    free_port,
    start_server,
    wait_ready,
)
from booking_testing.tls import Tls, make_tls

DEX_VERSION = "2.45.1"
API_CLIENT = "pat-booking-api"
PATIENT_CLIENT = "patient-portal"
STAFF_CLIENT = "staff-console"
PASSWORD = "password"  # noqa: S105 - the test users' password; its bcrypt hash is below
# bcrypt("password"), cost 10, as in dex's own example configuration.
PASSWORD_HASH = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"  # noqa: S105
CLIENT_SECRETS = {
    API_CLIENT: "api-client-secret-for-tests",
    PATIENT_CLIENT: "portal-client-secret-for-tests",
    STAFF_CLIENT: "staff-client-secret-for-tests",
}
# username -> (groups, preferred_username); usernames log in as <name>@example.org.
USERS: dict[str, list[str]] = {
    "patient-a": ["patient"],
    "patient-b": ["patient"],
    "staff-c1": ["staff", "clinic:C1"],
    "staff-all": ["staff", "clinic:*"],
    "staff-none": ["staff"],
}


def dex_binary() -> Path:
    """The cached dex binary; fails with a clear message when it was not built."""
    exe = CACHE_ROOT / f"dex-{DEX_VERSION}" / "bin" / "dex"
    if not exe.exists():
        raise InfraError(f"{exe} missing: run `make provision` (scripts/infra/dex.sh)")
    return exe


def _config(port: int, telemetry_port: int, tls: Tls | None) -> dict[str, Any]:
    scheme = "https" if tls else "http"
    issuer = f"{scheme}://127.0.0.1:{port}/dex"
    web: dict[str, str] = {scheme: f"127.0.0.1:{port}"}
    if tls:
        web |= {"tlsCert": str(tls.cert), "tlsKey": str(tls.key)}
    return {
        "issuer": issuer,
        "storage": {"type": "memory"},
        "web": web,
        "telemetry": {"http": f"127.0.0.1:{telemetry_port}"},
        "logger": {"level": "info", "format": "json"},
        "oauth2": {"passwordConnector": "local", "skipApprovalScreen": True},
        "expiry": {"idTokens": "1h"},
        "enablePasswordDB": True,
        "staticClients": [
            {
                "id": API_CLIENT,
                "name": "pat-booking API",
                "secret": CLIENT_SECRETS[API_CLIENT],
                "trustedPeers": [PATIENT_CLIENT, STAFF_CLIENT],
                "redirectURIs": ["http://127.0.0.1/callback"],
            },
            *(
                {
                    "id": cid,
                    "name": cid,
                    "secret": CLIENT_SECRETS[cid],
                    "redirectURIs": ["http://127.0.0.1/callback"],
                }
                for cid in (PATIENT_CLIENT, STAFF_CLIENT)
            ),
        ],
        "staticPasswords": [
            {
                "email": f"{name}@example.org",
                "hash": PASSWORD_HASH,
                "username": name,
                "preferredUsername": name,
                "emailVerified": True,
                "userID": f"uid-{name}",
                "groups": groups,
            }
            for name, groups in USERS.items()
        ],
    }


@dataclass
class Dex:
    """A running dex; `issuer` is the value for BOOKING_AUTH_ISSUER."""

    workdir: Path
    port: int
    telemetry_port: int
    server: Server | None = None
    starts: int = field(default=0)
    tls: Tls | None = None

    @property
    def issuer(self) -> str:
        """The issuer URL (also the base of the discovery document)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/dex"

    @property
    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else True

    def start(self) -> None:
        """Start dex on its ports and wait until it serves its discovery document."""
        config = self.workdir / "dex.json"  # dex reads YAML, and JSON is YAML
        config.write_text(json.dumps(_config(self.port, self.telemetry_port, self.tls), indent=2))
        self.server = start_server("dex", [str(dex_binary()), "serve", str(config)], workdir=self.workdir)
        self.starts += 1
        server = self.server

        def ready() -> bool:
            server.check_alive()
            r = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2, verify=self._verify)
            return r.status_code == 200

        wait_ready(ready, timeout=60, what="dex's discovery document")

    def restart(self) -> None:
        """Stop and start again on the same port: in-memory storage means new signing keys (a rotation)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        """Stop dex."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def jwks(self) -> dict[str, Any]:
        """The published key set."""
        r = httpx.get(f"{self.issuer}/keys", timeout=5, verify=self._verify)
        r.raise_for_status()
        keys: dict[str, Any] = r.json()
        return keys

    def keys_requests(self) -> int:
        """How many times the key set was fetched since the last start (dex's own request counter)."""
        text = httpx.get(f"http://127.0.0.1:{self.telemetry_port}/metrics", timeout=5).text
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("http_requests_total{") and 'handler="/keys"' in line
        )

    def token(self, username: str, *, client: str | None = None, audience: str | None = API_CLIENT) -> str:
        """An ID token for the user by the password grant, issued to `audience` through `client`."""
        client = client or (STAFF_CLIENT if username.startswith("staff") else PATIENT_CLIENT)
        scopes = ["openid", "profile", "email", "groups"]
        if audience is not None:
            scopes.append(f"audience:server:client_id:{audience}")
        r = httpx.post(
            f"{self.issuer}/token",
            data={
                "grant_type": "password",
                "username": f"{username}@example.org",
                "password": PASSWORD,
                "scope": " ".join(scopes),
            },
            auth=(client, CLIENT_SECRETS[client]),
            timeout=10,
            verify=self._verify,
        )
        if r.status_code != 200:
            raise InfraError(f"dex refused the password grant for {username}: {r.status_code} {r.text}")
        token: str = r.json()["id_token"]
        return token


def start_dex(workdir: Path, *, https: bool = False) -> Dex:
    """Start dex on free loopback ports; https: with a certificate from a CA made for it (`dex.tls.ca`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tls = make_tls(workdir / "tls", "127.0.0.1") if https else None
    dex = Dex(workdir=workdir, port=free_port(), telemetry_port=free_port(), tls=tls)
    dex.start()
    return dex
