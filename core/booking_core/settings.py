"""Process settings, read from the environment with the BOOKING_ prefix.

Each process type has its own subclass; entrypoints build them through the cached getters,
never at import time, so tests can set the environment first.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from limits import parse
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_DIR = Path(".booking")
DEFAULT_DATABASE_URL = f"sqlite:///{EMBEDDED_DIR}/booking.db"
# The dev key signs tokens for `booking run` only: it is published here, so the API accepts it only when
# environment=dev and no real verification is configured (booking_api.verifier).
DEV_JWT_KEY = "dev-only-insecure-key-for-booking-run-0123456789"
DEV_JWT_ISSUER = "pat-booking-dev"
DEV_JWT_AUDIENCE = "pat-booking-api"


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
    # /livez fails when a loop (a consumer's poll, the relay, a worker's fetch) has not progressed for
    # this long, or a message has been in progress for this long (Kafka itself evicts a consumer that
    # has not polled for max.poll.interval.ms, 300 s).
    liveness_max_age_seconds: float = Field(default=120.0, gt=0)

    @property
    def embedded(self) -> bool:
        """True when running without Kafka (the `booking run` shape)."""
        return self.kafka_bootstrap_servers is None


class EdgeSettings(BaseSettings):
    """The API's HTTP edge: size limits, rate limits and which proxies may say the scheme and client.

    Rate limits use the `limits` notation ("20/minute", "5 per second"); their storage is Redis when
    BOOKING_REDIS_URL is set (shared by every API replica), process memory otherwise (`booking run`).
    """

    model_config = SettingsConfigDict(env_prefix="BOOKING_", extra="ignore")

    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=256 * 1_048_576)
    # All request header lines together; uvicorn's h11 parser gets the same bound.
    max_header_bytes: int = Field(default=32_768, ge=4096, le=1_048_576)
    # h11 stops reading a header block at max_header_bytes; httptools is faster but buffers any size
    # (the edge middleware still answers 431, after the server has held the whole block in memory).
    http_parser: Literal["h11", "httptools"] = "h11"
    rate_limit_enabled: bool = True
    rate_limit_per_client: str = "600/minute"
    rate_limit_per_subject: str = "300/minute"
    # Failed authentications per client address: far fewer than normal requests (token guessing).
    rate_limit_auth_failures: str = "20/minute"
    # Prefix of the Redis keys, so environments (or test runs) sharing a Redis never share counts.
    rate_limit_key_prefix: str = Field(default="pat-booking-ratelimit", min_length=1, max_length=64)
    # Addresses (or CIDRs) of the ingress/proxies whose X-Forwarded-For/-Proto are believed.
    trusted_proxies: str = "127.0.0.1"

    @field_validator("rate_limit_per_client", "rate_limit_per_subject", "rate_limit_auth_failures")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        parse(value)  # ValueError names the setting at start-up, not at the first request
        return value


class ApiSettings(BookingSettings, EdgeSettings):
    """The FastAPI booking API."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # Bearer tokens (booking_api.verifier). Outside environment=dev one of two modes is required, or the API
    # refuses to start: OpenID Connect (issuer + audience; keys from the issuer's JWKS, discovered unless
    # auth_jwks_url is given) or an HS256 shared secret (+ issuer and audience) for small installs.
    # With none of them and environment=dev, the published dev key is used (`booking run`).
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_jwks_url: str | None = None
    auth_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    auth_shared_secret: SecretStr | None = None
    # Which claims carry what: the patient's id (patients.id), the role, and the staff member's clinics.
    auth_patient_id_claim: str = "sub"
    auth_role_claim: str = "role"
    auth_staff_role: str = "staff"
    auth_patient_role: str = "patient"
    # Unset: staff may manage every clinic. Set: a staff token must list its clinics (ids or codes) in
    # this claim, each after auth_clinic_prefix (e.g. groups "clinic:C1"); "<prefix>*" means every clinic.
    auth_clinic_claim: str | None = None
    auth_clinic_prefix: str = ""
    auth_max_token_bytes: int = Field(default=8192, ge=512, le=65536)
    auth_max_token_lifetime_minutes: int = Field(default=1440, ge=1, le=10080)
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300)
    auth_jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # An unknown `kid` refetches the JWKS (a rotation), at most once per this many seconds.
    auth_jwks_refresh_cooldown_seconds: float = Field(default=10.0, ge=0)
    auth_http_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Verified tokens remembered (by hash) per worker, so a portal's repeated token is not re-verified on
    # every request; 0 turns the cache off.
    auth_token_cache_size: int = Field(default=4096, ge=0, le=1_000_000)
    idempotency_retention_hours: int = Field(default=24, ge=1)
    # Database connections kept per API worker process. Sync routes run on anyio's 40 threads: a pool
    # smaller than the concurrent requests opened and closed an overflow connection per request (a
    # PostgreSQL backend forked each time) under 16 concurrent clients (issue 15's profile).
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_pool_max_overflow: int = Field(default=20, ge=0, le=200)
    # A `SELECT 1` round trip before every checkout catches a connection the server dropped; off, the
    # first request on a dropped connection answers 503 and the pool replaces every older connection.
    db_pool_pre_ping: bool = True
    cancel_notice_hours: int = Field(default=2, ge=0)
    reschedule_notice_hours: int = Field(default=2, ge=0)
    hold_ttl_minutes: int = Field(default=10, ge=1)

    @property
    def dev_auth(self) -> bool:
        """True when tokens are checked with the published dev key (environment=dev, nothing configured)."""
        return self.environment == "dev" and self.auth_issuer is None and self.auth_shared_secret is None


class ConsumerSettings(BookingSettings):
    """One Kafka consumer process."""

    # No group setting: the group comes from booking_core.topology and the Kafka prefix, as KEDA's does.
    poll_timeout_seconds: float = Field(default=1.0, gt=0)
    max_batch: int = Field(default=100, ge=1)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0)
    # lis-testresult. HL7 timestamps without an offset are the sender's local time: MSH-7's offset,
    # else this zone per MSH-4 sending facility (JSON object), else the default zone; unset, the zone is
    # looked up per batch (the clinic coded as MSH-4, else the clinics' one zone) and a message no zone
    # is found for is dead-lettered `unknown_time_zone`. An unknown zone name stops the consumer.
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
    # Refused requests (access_denied_log) are kept a year, for investigations; the database refuses
    # deleting rows younger than 89 days (revision 0008), so 90 is the least accepted here.
    access_denied_retention_days: int = Field(default=365, ge=90)
    noshow_grace_minutes: int = Field(default=30, ge=0)
    # A notice dispatched this long ago and still not completed (its job was lost) is dispatched again.
    notice_redispatch_seconds: int = Field(default=600, ge=1)
    # Optional node-exporter textfile: the run's metrics are written there on exit.
    metrics_textfile: str | None = None
    # Optional Prometheus Pushgateway (http://host:9091): each task's last run is pushed there on exit.
    pushgateway_url: str | None = None


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
