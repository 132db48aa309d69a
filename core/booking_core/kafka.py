"""Kafka client configuration from settings, and the one place that builds a producer.

Consumers build their `confluent_kafka.Consumer` in `booking_consumers.runtime` from `client_config`;
everything that produces (the outbox relay, DLQ writes, benchmarks) goes through `make_producer`.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer

from booking_core.settings import BookingSettings

__all__ = ["KafkaException", "Producer", "client_config", "make_producer", "producer_config", "topic_name"]


def client_config(settings: BookingSettings) -> dict[str, Any]:
    """Bootstrap servers and security (SASL when configured) shared by producers and consumers."""
    if not settings.kafka_bootstrap_servers:
        raise ValueError("BOOKING_KAFKA_BOOTSTRAP_SERVERS is not set (embedded mode has no Kafka)")
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        "client.id": f"pat-booking-be-{settings.environment}",
    }
    if settings.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl.username"] = settings.kafka_sasl_username or ""
        if settings.kafka_sasl_password is not None:
            conf["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return conf


def producer_config(settings: BookingSettings, **overrides: Any) -> dict[str, Any]:
    """An idempotent producer: acks=all, no duplicates or reordering on internal retries."""
    conf = client_config(settings)
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            # Retries happen inside librdkafka until this deadline; after it the caller sees the error
            # and the outbox row stays unpublished, to be retried on the next relay pass.
            "delivery.timeout.ms": 30_000,
        }
    )
    conf.update(overrides)
    return conf


def make_producer(settings: BookingSettings, **overrides: Any) -> Producer:
    """A confluent-kafka producer configured from settings."""
    return Producer(producer_config(settings, **overrides))


def topic_name(settings: BookingSettings, topic: str) -> str:
    """The physical topic name: the environment's prefix (may be empty) plus the logical name."""
    return f"{settings.kafka_topic_prefix}{topic}"
