"""The BookingPlatform spec as a typed pydantic model: parsed once at the edge, then trusted.

The CRD's OpenAPI schema is generated from these classes (`crd.py`), so field names, defaults and
bounds are written once. The building blocks live in `spec_types`; this module holds the components,
the whole spec and `parse_platform`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from booking_operator import names
from booking_operator.spec_settings import EdgeSpec, LisSpec, RateLimitsSpec
from booking_operator.spec_types import (
    CR_NAME,
    DEFAULT_COLLECTOR_IMAGE,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    AuthClaims,
    AuthSpec,
    Autoscaling,
    Connections,
    EnvVar,
    HpaAutoscaling,
    HpaSpec,
    ImageSpec,
    KafkaConnection,
    KafkaSasl,
    KedaSpec,
    PdbSpec,
    ResourceList,
    Resources,
    SecretKeyRef,
    SpecModel,
    Toleration,
    cel,
)

__all__ = [
    "CR_NAME",
    "ApiServiceSpec",
    "ApiSpec",
    "AuthClaims",
    "AuthSpec",
    "Autoscaling",
    "BookingPlatformSpec",
    "CollectorExporter",
    "CollectorSpec",
    "ComponentId",
    "Connections",
    "ConsumerSpec",
    "ConsumersSpec",
    "CronSpec",
    "EdgeSpec",
    "EnvVar",
    "HpaAutoscaling",
    "HpaSpec",
    "ImageSpec",
    "InvalidPlatformError",
    "KafkaConnection",
    "KafkaSasl",
    "KedaSpec",
    "LisSpec",
    "PdbSpec",
    "Platform",
    "PodSettings",
    "RateLimitsSpec",
    "ResourceList",
    "Resources",
    "RestartAt",
    "SecretKeyRef",
    "SpecModel",
    "Toleration",
    "WorkerSpec",
    "WorkersSpec",
    "WorkloadSpec",
    "name_problems",
    "parse_platform",
    "parse_spec",
]


class PodSettings(SpecModel):
    """What every component's pods can tune."""

    resources: Resources = Resources(
        requests=ResourceList(cpu="50m", memory="192Mi"), limits=ResourceList(memory="384Mi")
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    affinity: dict[str, Any] | None = Field(default=None, description="a core/v1 Affinity, passed through")


class WorkloadSpec(PodSettings):
    """A Deployment-backed component."""

    replicas: int = Field(default=1, ge=0, le=1000, description="ignored while autoscaled")
    pdb: PdbSpec = PdbSpec()


class ApiServiceSpec(SpecModel):
    """The API's Service; the seed exposes it as NodePort 80 -> 30978."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "NodePort"
    port: int = Field(default=80, ge=1, le=65535)
    # Ignored for ClusterIP (a default cannot depend on another field, so no rule refuses it).
    node_port: int | None = Field(default=30978, ge=30000, le=32767)


class ApiSpec(WorkloadSpec):
    """The FastAPI booking API."""

    resources: Resources = Resources(
        requests=ResourceList(cpu="100m", memory="256Mi"), limits=ResourceList(memory="512Mi")
    )
    autoscaling: HpaAutoscaling = HpaAutoscaling(hpa=HpaSpec(min_replicas=1, max_replicas=5))
    service: ApiServiceSpec = ApiServiceSpec()
    run_migrations: bool = Field(default=True, description="run `booking migrate` as an init container")
    edge: EdgeSpec | None = Field(default=None, description="trusted proxies, size and rate limits")


class ConsumerSpec(WorkloadSpec):
    """One Kafka consumer."""

    autoscaling: Autoscaling = Autoscaling()


class WorkerSpec(WorkloadSpec):
    """One Dramatiq worker."""

    autoscaling: HpaAutoscaling = HpaAutoscaling()


class ConsumersSpec(SpecModel):
    """The nine consumers, by the name `booking consumer NAME` takes; no other key is accepted."""

    appointment_update: ConsumerSpec = Field(default=ConsumerSpec(), alias="appointment-update")
    booking: ConsumerSpec = ConsumerSpec()
    customer: ConsumerSpec = ConsumerSpec()
    lis_testresult: ConsumerSpec = Field(default=ConsumerSpec(replicas=2), alias="lis-testresult")
    pat_booking_recommend_test: ConsumerSpec = Field(
        default=ConsumerSpec(), alias="pat-booking-recommend-test"
    )
    pat_test_result: ConsumerSpec = Field(
        default=ConsumerSpec(autoscaling=Autoscaling(keda=KedaSpec())), alias="pat-test-result"
    )
    pat_test_result_svip1: ConsumerSpec = Field(default=ConsumerSpec(), alias="pat-test-result-svip1")
    pat_test_result_svip2: ConsumerSpec = Field(default=ConsumerSpec(), alias="pat-test-result-svip2")
    sync_test_master_data: ConsumerSpec = Field(default=ConsumerSpec(), alias="sync-test-master-data")

    def items(self) -> list[tuple[str, ConsumerSpec]]:
        """(consumer name, settings) in a stable order."""
        return [(f.alias or k, getattr(self, k)) for k, f in type(self).model_fields.items()]


class WorkersSpec(SpecModel):
    """The three workers, by the name `booking worker NAME` takes."""

    batch_publisher: WorkerSpec = Field(default=WorkerSpec(), alias="batch-publisher")
    default: WorkerSpec = WorkerSpec()
    notifications: WorkerSpec = WorkerSpec()

    def items(self) -> list[tuple[str, WorkerSpec]]:
        """(worker name, settings) in a stable order."""
        return [(f.alias or k, getattr(self, k)) for k, f in type(self).model_fields.items()]


class CronSpec(PodSettings):
    """The per-minute CronJob running `booking cron`."""

    schedule: str = Field(default="* * * * *", min_length=9, max_length=100)
    # Forbid: a run that overruns the minute must not stack up behind itself.
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Forbid"
    suspend: bool = False
    successful_jobs_history_limit: int = Field(default=3, ge=0, le=100)
    failed_jobs_history_limit: int = Field(default=3, ge=0, le=100)
    starting_deadline_seconds: int = Field(default=50, ge=1, le=86400)
    active_deadline_seconds: int = Field(default=300, ge=1, le=86400)
    # Retrying a failed minute is pointless: the next scheduled run does the same work.
    backoff_limit: int = Field(default=0, ge=0, le=10)


class CollectorExporter(SpecModel):
    """Where the collector sends traces; an empty endpoint logs them with the debug exporter."""

    endpoint: str = Field(default="", max_length=512)
    protocol: Literal["otlp", "otlphttp"] = "otlp"
    insecure: bool = True


class CollectorSpec(WorkloadSpec):
    """The OpenTelemetry collector (OTLP gRPC 4317, HTTP 4318)."""

    image: str = Field(default=DEFAULT_COLLECTOR_IMAGE, min_length=1, max_length=512)
    resources: Resources = Resources(
        requests=ResourceList(cpu="50m", memory="128Mi"), limits=ResourceList(memory="256Mi")
    )
    autoscaling: HpaAutoscaling = HpaAutoscaling()
    exporter: CollectorExporter = CollectorExporter()


ComponentId = Literal[
    "api",
    "consumer-appointment-update",
    "consumer-booking",
    "consumer-customer",
    "consumer-lis-testresult",
    "consumer-pat-booking-recommend-test",
    "consumer-pat-test-result",
    "consumer-pat-test-result-svip1",
    "consumer-pat-test-result-svip2",
    "consumer-sync-test-master-data",
    "worker-batch-publisher",
    "worker-default",
    "worker-notifications",
    "cron",
    "otel-collector",
]


class RestartAt(SpecModel):
    """A rolling restart: changing `at` rolls the listed components (all when the list is empty)."""

    at: str = Field(min_length=1, max_length=64, description="any new value, e.g. a timestamp")
    components: list[ComponentId] = Field(default_factory=list, max_length=15)


AUTH_REQUIRED = (
    "spec.auth is required unless spec.environment is dev: outside dev the API refuses to start "
    "without token verification (issuer and audience, with the issuer's JWKS or a sharedSecretRef)"
)


class BookingPlatformSpec(SpecModel):
    """One environment of the booking platform."""

    model_config = ConfigDict(
        json_schema_extra=cel(("self.environment == 'dev' || has(self.auth)", AUTH_REQUIRED))
    )

    image: ImageSpec
    environment: str = Field(max_length=20, pattern=DNS_LABEL, description="name suffix, e.g. prod")
    connections: Connections = Connections()
    auth: AuthSpec | None = Field(default=None, description="token verification; required unless dev")
    lis: LisSpec | None = Field(default=None, description="the LIS feed's time zones (lis-testresult)")
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="use this one instead of rendering one",
    )
    api: ApiSpec = ApiSpec()
    consumers: ConsumersSpec = ConsumersSpec()
    workers: WorkersSpec = WorkersSpec()
    cron: CronSpec = CronSpec()
    otel_collector: CollectorSpec = CollectorSpec()
    paused: bool = Field(default=False, description="the operator stops writing children while true")
    restart_at: RestartAt | None = None

    @model_validator(mode="after")
    def _auth_outside_dev(self) -> BookingPlatformSpec:
        if self.environment != "dev" and self.auth is None:
            raise ValueError(AUTH_REQUIRED)
        return self


@dataclass(frozen=True)
class Platform:
    """A parsed BookingPlatform: identity from metadata plus the typed spec."""

    name: str
    namespace: str
    spec: BookingPlatformSpec
    uid: str | None = None
    generation: int | None = None


class InvalidPlatformError(ValueError):
    """A BookingPlatform that cannot be rendered; `problems` lists (field path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("invalid BookingPlatform:\n" + "\n".join(f"  {p}: {m}" for p, m in problems))


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(["spec", *(str(p) for p in loc)])


def _message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def name_problems(name: str, spec: BookingPlatformSpec) -> list[tuple[str, str]]:
    """Names derived from the CR name that would exceed a Kubernetes limit."""
    problems: list[tuple[str, str]] = []
    if not re.fullmatch(CR_NAME, name):
        problems.append(
            ("metadata.name", f"{name!r} must be a DNS-1035 label (lowercase, starts with a letter)")
        )
    limits = list(names.BASE_LIMITS)
    limits += [names.keda_limit(c) for c, s in spec.consumers.items() if s.autoscaling.keda is not None]
    for lim in limits:
        if not lim.fits(name, spec.environment):
            what = "name + environment" if lim.with_env else "name"
            problems.append(
                (
                    "metadata.name",
                    f"too long for {lim.what} (<= {lim.limit} chars): {what} may be {lim.budget()}",
                )
            )
    return problems


def parse_spec(spec: dict[str, Any]) -> BookingPlatformSpec:
    """Validate a spec dict; raises InvalidPlatformError naming each bad field."""
    try:
        return BookingPlatformSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidPlatformError([(_loc(e["loc"]), _message(e["msg"])) for e in exc.errors()]) from exc


def parse_platform(obj: dict[str, Any]) -> Platform:
    """Parse a whole BookingPlatform object (as from the API server or a YAML file)."""
    problems: list[tuple[str, str]] = []
    if obj.get("apiVersion", names.API_VERSION) != names.API_VERSION:
        problems.append(("apiVersion", f"expected {names.API_VERSION}, got {obj.get('apiVersion')!r}"))
    if obj.get("kind", names.KIND) != names.KIND:
        problems.append(("kind", f"expected {names.KIND}, got {obj.get('kind')!r}"))
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append(("metadata.name", "required"))
    raw_spec = obj.get("spec")
    spec: BookingPlatformSpec | None = None
    if not isinstance(raw_spec, dict):
        problems.append(("spec", "required (an object)"))
    else:
        try:
            spec = parse_spec(raw_spec)
        except InvalidPlatformError as exc:
            problems += exc.problems
    if spec is not None and isinstance(name, str) and name:
        problems += name_problems(name, spec)
    if problems or spec is None or not isinstance(name, str):
        raise InvalidPlatformError(problems)
    generation = meta.get("generation")
    return Platform(
        name=name,
        namespace=str(meta.get("namespace") or "default"),
        spec=spec,
        uid=meta.get("uid"),
        generation=int(generation) if generation is not None else None,
    )
