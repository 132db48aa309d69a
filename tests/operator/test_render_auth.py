"""The API Deployment gets `spec.auth` as BOOKING_AUTH_* env; the shared secret only by secretKeyRef."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from booking_api.settings import ApiSettings
from booking_operator.render import render
from booking_operator.spec import parse_platform

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"


def _prod() -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(PROD.read_text())
    return obj


def _containers(obj: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Env of every container (init containers included) of every Deployment, by deployment/container."""
    out = {}
    for m in render(parse_platform(obj)):
        if m["kind"] in ("Deployment", "CronJob"):
            pod = (
                m["spec"]["template"]["spec"]
                if m["kind"] == "Deployment"
                else m["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            )
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                out[f"{m['metadata']['name']}/{c['name']}"] = c.get("env", [])
    return out


def _api_env(obj: dict[str, Any]) -> list[dict[str, Any]]:
    envs = _containers(obj)
    (key,) = [
        k for k in envs if k.startswith(f"{obj['metadata']['name']}--app--") and not k.endswith("migrate")
    ]
    return envs[key]


def test_prod_example_wires_oidc_to_the_api_only() -> None:
    env = {e["name"]: e for e in _api_env(_prod())}
    assert env["BOOKING_ENVIRONMENT"]["value"] == "prod"
    assert env["BOOKING_AUTH_ISSUER"]["value"] == "https://login.pat-booking.example.org/realms/patients"
    assert env["BOOKING_AUTH_AUDIENCE"]["value"] == "pat-booking-api"
    assert env["BOOKING_AUTH_ROLE_CLAIM"]["value"] == "groups"
    assert env["BOOKING_AUTH_CLINIC_CLAIM"]["value"] == "groups"
    assert env["BOOKING_AUTH_CLINIC_PREFIX"]["value"] == "clinic:"
    assert "BOOKING_AUTH_SHARED_SECRET" not in env
    # consumers, workers and the cron verify no tokens: they get none of it
    others = [k for k in _containers(_prod()) if "--app--" not in k]
    assert others
    assert all(
        not any(e["name"].startswith("BOOKING_AUTH_") for e in _containers(_prod())[k]) for k in others
    )


def test_the_rendered_env_is_what_the_api_reads(monkeypatch: Any) -> None:
    for e in _api_env(_prod()):
        if "value" in e:
            monkeypatch.setenv(e["name"], e["value"])
    settings = ApiSettings()
    assert settings.environment == "prod"
    assert settings.auth_algorithms == ["RS256", "ES256"]
    assert settings.auth_patient_id_claim == "patient_id"
    from booking_api.verifier import build_verifier

    assert build_verifier(settings).mode == "oidc"


def test_shared_secret_travels_by_secret_key_ref_only() -> None:
    obj = _prod()
    obj["spec"]["auth"]["sharedSecretRef"] = {"name": "booking-auth", "key": "jwt-secret"}
    env = {e["name"]: e for e in _api_env(obj)}
    assert env["BOOKING_AUTH_SHARED_SECRET"] == {
        "name": "BOOKING_AUTH_SHARED_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "booking-auth", "key": "jwt-secret"}},
    }
    assert "BOOKING_AUTH_ALGORITHMS" not in env  # HS256 is implied by the shared secret
    rendered = yaml.safe_dump_all(render(parse_platform(obj)))
    assert "jwt-secret" in rendered and "value: jwt-secret" not in rendered


def test_dev_without_auth_renders_no_auth_env() -> None:
    obj = _prod()
    del obj["spec"]["auth"]
    obj["spec"]["environment"] = "dev"
    assert not [e for e in _api_env(obj) if e["name"].startswith("BOOKING_AUTH_")]


def test_ca_bundle_is_mounted_into_the_api_container_only() -> None:
    obj = _prod()
    obj["spec"]["auth"]["caBundleRef"] = {"name": "hospital-ca", "key": "ca.pem"}
    deployments = {m["metadata"]["name"]: m for m in render(parse_platform(obj)) if m["kind"] == "Deployment"}
    api = next(d for n, d in deployments.items() if "--app--" in n)
    pod = api["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth-ca")
    assert env["BOOKING_AUTH_CA_FILE"] == f"{mount['mountPath']}/ca.pem"
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "auth-ca")
    assert volume["configMap"] == {"name": "hospital-ca", "items": [{"key": "ca.pem", "path": "ca.pem"}]}
    # the file the API reads is the one the volume provides
    settings = ApiSettings(auth_ca_file=env["BOOKING_AUTH_CA_FILE"])  # type: ignore[call-arg]
    assert str(settings.auth_ca_file) == f"{mount['mountPath']}/{volume['configMap']['items'][0]['path']}"
    for name, d in deployments.items():
        if d is not api:
            names = {v["name"] for v in d["spec"]["template"]["spec"]["volumes"]}
            assert "auth-ca" not in names, name
    # without the field nothing is mounted (the production example renders the seed unchanged)
    plain = next(
        m
        for m in render(parse_platform(_prod()))
        if m["kind"] == "Deployment" and m["metadata"]["name"] == api["metadata"]["name"]
    )
    assert "auth-ca" not in {v["name"] for v in plain["spec"]["template"]["spec"]["volumes"]}
