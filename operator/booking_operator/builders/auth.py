"""The API's token verification settings from `spec.auth`, as container env (read by booking_api.verifier).

The shared secret only ever travels as a secretKeyRef; the rest are public identifiers. Without `auth`
(environment dev only, by CEL) nothing is set and the API falls back to the dev key.
"""

from __future__ import annotations

import json
from typing import Any

from booking_operator.spec import Platform

CA_VOLUME = "auth-ca"
CA_DIR = "/etc/booking/auth-ca"


def auth_env(platform: Platform) -> list[dict[str, Any]]:
    """BOOKING_AUTH_* variables for the API container; empty when the spec has no auth."""
    auth = platform.spec.auth
    if auth is None:
        return []
    claims = auth.claims
    values: list[tuple[str, str | None]] = [
        ("BOOKING_AUTH_ISSUER", auth.issuer),
        ("BOOKING_AUTH_AUDIENCE", auth.audience),
        ("BOOKING_AUTH_JWKS_URL", auth.jwks_url),
        # pydantic-settings reads a list setting as JSON
        ("BOOKING_AUTH_ALGORITHMS", None if auth.shared_secret_ref else json.dumps(auth.algorithms)),
        ("BOOKING_AUTH_PATIENT_ID_CLAIM", claims.patient_id),
        ("BOOKING_AUTH_ROLE_CLAIM", claims.role),
        ("BOOKING_AUTH_STAFF_ROLE", claims.staff_role),
        ("BOOKING_AUTH_PATIENT_ROLE", claims.patient_role),
        ("BOOKING_AUTH_CLINIC_CLAIM", claims.clinics),
        ("BOOKING_AUTH_CLINIC_PREFIX", claims.clinic_prefix or None),
        ("BOOKING_AUTH_CA_FILE", f"{CA_DIR}/{auth.ca_bundle_ref.key}" if auth.ca_bundle_ref else None),
    ]
    env: list[dict[str, Any]] = [{"name": n, "value": v} for n, v in values if v is not None]
    ref = auth.shared_secret_ref
    if ref is not None:
        env.append(
            {
                "name": "BOOKING_AUTH_SHARED_SECRET",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    return env


def auth_ca_volume(platform: Platform) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) putting spec.auth.caBundleRef's ConfigMap key in the API container, or empty."""
    auth = platform.spec.auth
    if auth is None or auth.ca_bundle_ref is None:
        return [], []
    ref = auth.ca_bundle_ref
    items = [{"key": ref.key, "path": ref.key}]
    volume = {"name": CA_VOLUME, "configMap": {"name": ref.name, "items": items}}
    return [volume], [{"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}]
