"""Building blocks of the BookingPlatform spec: references, image, autoscaling, resources, placement.

Each rule a JSON schema cannot express is written twice, side by side: a pydantic validator (for
`booking render` and the operator) and a CEL rule in `json_schema_extra` (for the API server).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Services are DNS-1035 labels (must start with a letter) and carry the CR name.
CR_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
DEFAULT_CONNECTION_SECRET = "booking-connections"  # noqa: S105 - a Secret name, not a secret
DEFAULT_COLLECTOR_IMAGE = "otel/opentelemetry-collector:0.116.0"


def _quantity_text(value: object) -> object:
    # YAML reads `cpu: 1` as an int; Kubernetes takes either form, the model keeps the string.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    Field(pattern=QUANTITY, json_schema_extra={"x-kubernetes-int-or-string": True}),
    BeforeValidator(_quantity_text),
]


def cel(*rules: tuple[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


class SpecModel(BaseModel):
    # extra="forbid": an unknown key (a misspelt consumer, `replica:`) is an error naming the field.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ConfigMapKeyRef(SpecModel):
    """A key in a ConfigMap in the CR's namespace (public material, such as a CA certificate)."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class SecretKeyRef(SpecModel):
    """A key in a Secret in the CR's namespace; connection values are never written in the CR."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class ImageSpec(SpecModel):
    """The one image every booking process runs from."""

    model_config = ConfigDict(
        json_schema_extra=cel(("has(self.tag) || has(self.digest)", "set tag or digest"))
    )

    repository: str = Field(min_length=1, max_length=255, pattern=r"^[^\s@:]+(:[0-9]+)?(/[^\s@:]+)*$")
    tag: str | None = Field(default=None, max_length=128, pattern=r"^[\w][\w.-]*$")
    digest: str | None = Field(default=None, pattern=r"^sha256:[a-f0-9]{64}$", description="wins over tag")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    pull_secrets: list[Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]] = Field(
        default_factory=list, max_length=8
    )

    @model_validator(mode="after")
    def _tag_or_digest(self) -> ImageSpec:
        if self.tag is None and self.digest is None:
            raise ValueError("set tag or digest")
        return self

    @property
    def reference(self) -> str:
        """`repository@digest` when pinned, else `repository:tag`."""
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


def _ref(key: str) -> SecretKeyRef:
    return SecretKeyRef(name=DEFAULT_CONNECTION_SECRET, key=key)


class DatabaseConnection(SpecModel):
    """Where the database URL (SQLAlchemy form) is kept."""

    url_secret_ref: SecretKeyRef = _ref("database-url")


class RedisConnection(SpecModel):
    """Where the Redis URL (Dramatiq's broker) is kept."""

    url_secret_ref: SecretKeyRef = _ref("redis-url")


class KafkaSasl(SpecModel):
    """SASL credentials, both from Secrets."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username_secret_ref: SecretKeyRef
    password_secret_ref: SecretKeyRef


class KafkaConnection(SpecModel):
    """Kafka bootstrap servers and auth."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.securityProtocol) || self.securityProtocol.startsWith('SASL_') == has(self.sasl)",
                "sasl is required exactly when securityProtocol is SASL_PLAINTEXT or SASL_SSL",
            )
        )
    )

    bootstrap_servers_secret_ref: SecretKeyRef = _ref("kafka-bootstrap-servers")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl: KafkaSasl | None = None
    topic_prefix: str = Field(default="", max_length=100, pattern=r"^[a-zA-Z0-9._-]*$")

    @model_validator(mode="after")
    def _sasl_matches_protocol(self) -> KafkaConnection:
        if self.security_protocol.startswith("SASL_") != (self.sasl is not None):
            raise ValueError("sasl is required exactly when securityProtocol is SASL_PLAINTEXT or SASL_SSL")
        return self


class Connections(SpecModel):
    """Secret references for every backing service."""

    database: DatabaseConnection = DatabaseConnection()
    kafka: KafkaConnection = KafkaConnection()
    redis: RedisConnection = RedisConnection()


# Asymmetric only (the API refuses HS* with a provider's keys and `none`); the shared secret is HS256.
TokenAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]


def _default_algorithms() -> list[TokenAlgorithm]:
    return ["RS256", "ES256"]


class AuthClaims(SpecModel):
    """Which token claims carry the patient id, the role and the staff member's clinics."""

    patient_id: str = Field(default="sub", min_length=1, max_length=128, description="holds patients.id")
    role: str = Field(default="role", min_length=1, max_length=128, description="a string or a list")
    staff_role: str = Field(default="staff", min_length=1, max_length=128)
    patient_role: str = Field(default="patient", min_length=1, max_length=128)
    clinics: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="scopes staff to the clinics (ids or codes) it lists; unset: every clinic",
    )
    clinic_prefix: str = Field(default="", max_length=64, description='e.g. "clinic:" for groups "clinic:C1"')


class AuthSpec(SpecModel):
    """How the API verifies bearer tokens: OpenID Connect, or an HS256 shared secret from a Secret."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!(has(self.jwksUrl) && has(self.sharedSecretRef))",
                "set at most one of jwksUrl, sharedSecretRef",
            )
        )
    )

    issuer: str = Field(max_length=512, pattern=r"^https://[^\s]+$", description="the `iss`")
    audience: str = Field(min_length=1, max_length=253, description="the `aud` tokens must carry")
    jwks_url: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^https://[^\s]+$",
        description="default: the jwks_uri of the issuer's discovery document",
    )
    algorithms: list[TokenAlgorithm] = Field(default_factory=_default_algorithms, min_length=1, max_length=8)
    shared_secret_ref: SecretKeyRef | None = Field(
        default=None, description="HS256 instead of OpenID Connect (small installs; 32 bytes or more)"
    )
    claims: AuthClaims = AuthClaims()
    ca_bundle_ref: ConfigMapKeyRef | None = Field(
        default=None,
        description="PEM CA certificates the API trusts for the issuer's discovery and JWKS (an internal CA)",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> AuthSpec:
        if self.jwks_url is not None and self.shared_secret_ref is not None:
            raise ValueError("set at most one of jwksUrl, sharedSecretRef")
        return self


class EnvVar(SpecModel):
    """An extra environment variable: a literal value or a Secret key."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("has(self.value) != has(self.secretKeyRef)", "set exactly one of value, secretKeyRef")
        )
    )

    name: str = Field(max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str | None = None
    secret_key_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if (self.value is None) == (self.secret_key_ref is None):
            raise ValueError("set exactly one of value, secretKeyRef")
        return self


class ResourceList(SpecModel):
    """CPU, memory and ephemeral storage quantities."""

    cpu: Quantity | None = None
    memory: Quantity | None = None
    ephemeral_storage: Quantity | None = Field(default=None, alias="ephemeral-storage")


class Resources(SpecModel):
    """Requests and limits; CPU requests are what a CPU HPA measures against."""

    requests: ResourceList = ResourceList()
    limits: ResourceList = ResourceList()


class Toleration(SpecModel):
    """A pod toleration."""

    key: str | None = Field(default=None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


# has() guards: the API server checks rules against the schema's object defaults too, where the
# nested defaults have not been filled in yet; real objects always carry both fields.
_MIN_MAX = (
    "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
    "minReplicas must be <= maxReplicas",
)


def _check_min_max(lo: int, hi: int) -> None:
    if lo > hi:
        raise ValueError(f"minReplicas ({lo}) must be <= maxReplicas ({hi})")


class HpaSpec(SpecModel):
    """A CPU HorizontalPodAutoscaler (autoscaling/v2)."""

    model_config = ConfigDict(json_schema_extra=cel(_MIN_MAX))

    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(default=5, ge=1, le=1000)
    target_cpu_utilization_percentage: int = Field(
        default=100, ge=1, le=1000, alias="targetCPUUtilizationPercentage"
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> HpaSpec:
        _check_min_max(self.min_replicas, self.max_replicas)
        return self


class KedaSpec(SpecModel):
    """A KEDA ScaledObject on the consumer group's Kafka lag."""

    model_config = ConfigDict(json_schema_extra=cel(_MIN_MAX))

    # KEDA scales to zero, so 0 is allowed here and not for a plain HPA.
    min_replicas: int = Field(default=1, ge=0, le=1000)
    max_replicas: int = Field(default=10, ge=1, le=1000)
    lag_threshold: int = Field(default=20, ge=1, le=1_000_000, description="target lag per replica")
    activation_lag_threshold: int = Field(default=0, ge=0, le=1_000_000)
    polling_interval: int = Field(default=30, ge=1, le=3600, description="seconds")
    cooldown_period: int = Field(default=300, ge=0, le=86400, description="seconds")
    # cooldownPeriod only governs the last step to zero; above minReplicas the HPA that KEDA creates scales
    # down after its own stabilization window (300 s unless set), shorter for a lag-driven consumer.
    scale_down_stabilization_seconds: int | None = Field(
        default=None, ge=0, le=3600, description="seconds; scale-down window of KEDA's HPA (default 300)"
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> KedaSpec:
        _check_min_max(self.min_replicas, self.max_replicas)
        return self


class HpaAutoscaling(SpecModel):
    """Autoscaling for components without a Kafka lag signal: a CPU HPA or nothing."""

    hpa: HpaSpec | None = None


class Autoscaling(SpecModel):
    """Autoscaling for a consumer: a CPU HPA, KEDA on Kafka lag, or nothing; never both."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!(has(self.hpa) && has(self.keda))",
                "set at most one of hpa, keda: two autoscalers would fight",
            )
        )
    )

    hpa: HpaSpec | None = None
    keda: KedaSpec | None = None

    @model_validator(mode="after")
    def _one_autoscaler(self) -> Autoscaling:
        if self.hpa is not None and self.keda is not None:
            raise ValueError("set at most one of hpa, keda: two autoscalers would fight")
        return self


class PdbSpec(SpecModel):
    """A PodDisruptionBudget, rendered only when the component runs (or may run) more than one pod."""

    enabled: bool = True
    max_unavailable: int = Field(default=1, ge=0, le=1000)
