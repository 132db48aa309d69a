"""Settings every process shares, read from the environment with the BOOKING_ prefix.

Each app subclasses `BookingSettings` in its own package (booking_api.settings, booking_consumers.settings,
booking_workers.settings; the operator's are booking_operator.settings) and builds them in its entrypoint,
never at import time, so tests can set the environment first.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_DIR = Path(".booking")
DEFAULT_DATABASE_URL = f"sqlite:///{EMBEDDED_DIR}/booking.db"


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
