"""The operator's settings (BOOKING_OPERATOR_*): what it watches, its ports and its resync periods."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
def get_operator_settings() -> OperatorSettings:
    """The operator's settings, read once per process."""
    return OperatorSettings()
