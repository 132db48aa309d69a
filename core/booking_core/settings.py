"""Process settings, read from the environment with the BOOKING_ prefix.

Each process type has its own subclass; entrypoints build them through the cached getters,
never at import time, so tests can set the environment first.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_DIR = Path(".booking")
DEFAULT_DATABASE_URL = f"sqlite:///{EMBEDDED_DIR}/booking.db"
# The dev key signs tokens for `booking run` only; `booking dev-token` refuses any other key.
DEV_JWT_KEY = "dev-only-insecure-key-for-booking-run-0123456789"


class BookingSettings(BaseSettings):
    """Settings every process shares: where the data lives and how to talk to the others."""

    model_config = SettingsConfigDict(env_prefix="BOOKING_", extra="ignore")

    environment: str = "dev"
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    database_url: str = DEFAULT_DATABASE_URL
    # None selects the embedded transports: the outbox read as a log instead of Kafka,
    # Dramatiq's in-memory broker instead of Redis.
    kafka_bootstrap_servers: str | None = None
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_topic_prefix: str = ""
    redis_url: str | None = None
    metrics_port: int = Field(default=9000, ge=0, le=65535)

    @property
    def embedded(self) -> bool:
        """True when running without Kafka (the `booking run` shape)."""
        return self.kafka_bootstrap_servers is None


class ApiSettings(BookingSettings):
    """The FastAPI booking API."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    jwt_issuer: str = "pat-booking-dev"
    jwt_audience: str = "pat-booking-api"
    jwt_key: SecretStr = SecretStr(DEV_JWT_KEY)
    jwt_algorithm: str = "HS256"
    idempotency_retention_hours: int = Field(default=24, ge=1)
    cancel_notice_hours: int = Field(default=2, ge=0)
    reschedule_notice_hours: int = Field(default=2, ge=0)
    hold_ttl_minutes: int = Field(default=10, ge=1)


class ConsumerSettings(BookingSettings):
    """One Kafka consumer process."""

    consumer_group_prefix: str = "pat-booking-be"
    poll_timeout_seconds: float = Field(default=1.0, gt=0)
    max_batch: int = Field(default=100, ge=1)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0)
    # lis-testresult. HL7 timestamps without an offset are the sender's local time: MSH-7's offset,
    # else this zone per MSH-4 sending facility (JSON object), else the default zone; unset, the default
    # is the clinics' zone, and the consumer refuses to start if they have several.
    lis_default_time_zone: str | None = None
    lis_facility_time_zones: dict[str, str] = Field(default_factory=dict)
    # Which PID-3 identifiers name our patients, in order of preference: "TYPE@AUTHORITY" with CX.5's type
    # and CX.4's namespace or OID ("*" for any). Social security and account numbers are never keys.
    lis_patient_identifiers: list[str] = Field(default_factory=lambda: ["MR@*", "PI@*", "PT@*", "PN@*"])


class WorkerSettings(BookingSettings):
    """One Dramatiq worker process."""

    worker_processes: int = Field(default=1, ge=1)
    worker_threads: int = Field(default=4, ge=1)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "no-reply@pat-booking.local"
    sms_provider_url: str | None = None
    push_provider_url: str | None = None
    provider_timeout_seconds: float = Field(default=5.0, gt=0)
    outbox_batch_size: int = Field(default=500, ge=1)
    # Notifications: attempts per channel, backoff between them, and how long a claim on a delivery
    # lasts before another worker may take it over (a worker that died mid-send).
    notification_max_attempts: int = Field(default=5, ge=1, le=50)
    notification_backoff_min_ms: int = Field(default=2_000, ge=0)
    notification_backoff_max_ms: int = Field(default=300_000, ge=0)
    notification_lease_seconds: float = Field(default=120.0, gt=0)
    portal_url: str = "https://portal.example.org"
    # A folder to write emails to as .eml files instead of SMTP (`booking run` uses .booking/mail).
    mail_dir: str | None = None


class CronSettings(BookingSettings):
    """One run of the per-minute tasks."""

    outbox_retention_hours: int = Field(default=72, ge=1)
    processed_message_retention_hours: int = Field(default=168, ge=1)
    idempotency_retention_hours: int = Field(default=24, ge=1)
    noshow_grace_minutes: int = Field(default=30, ge=0)
    # Optional node-exporter textfile: the run's metrics are written there on exit (nothing is pushed).
    metrics_textfile: str | None = None


class OperatorSettings(BaseSettings):
    """The Kopf operator."""

    model_config = SettingsConfigDict(env_prefix="BOOKING_OPERATOR_", extra="ignore")

    namespace: str | None = None  # None watches every namespace
    field_manager: str = "booking-operator"
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    liveness_port: int = Field(default=8080, ge=0, le=65535)
    resync_seconds: float = Field(default=60.0, gt=0)
    keda_recheck_seconds: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"


@lru_cache
def get_api_settings() -> ApiSettings:
    """The API's settings, read once per process."""
    return ApiSettings()


@lru_cache
def get_consumer_settings() -> ConsumerSettings:
    """A consumer's settings, read once per process."""
    return ConsumerSettings()


@lru_cache
def get_worker_settings() -> WorkerSettings:
    """A worker's settings, read once per process."""
    return WorkerSettings()


@lru_cache
def get_cron_settings() -> CronSettings:
    """The cron run's settings, read once per process."""
    return CronSettings()


@lru_cache
def get_operator_settings() -> OperatorSettings:
    """The operator's settings, read once per process."""
    return OperatorSettings()
