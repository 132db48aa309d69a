"""The workers' and the cron run's settings (BOOKING_*): channels, retries, the relay, retention."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator

from booking_core.settings import BookingSettings
from booking_workers.affinity import parse_cpus


class WorkerSettings(BookingSettings):
    """One Dramatiq worker process."""

    worker_processes: int = Field(default=1, ge=1)
    # 8, not 4: a notifications job waits on PostgreSQL, SMTP and Redis round trips, and with 4 threads
    # they were idle a third of a burst (the fetch after each ack); 8 gave ~15% more emails/s and a
    # shorter wait behind a burst (issue 15, fifth pass, round 2). The prefetch follows the threads, so
    # an SVIP message still starts next behind a standard backlog. Each notifications thread keeps a
    # database connection (pool sized to fit: actors.notifier_sessions).
    worker_threads: int = Field(default=8, ge=1)
    # An idle queue is polled again after at most this long (Dramatiq's worker_timeout, 1 s by default):
    # a notice on a quiet SVIP queue waited up to a second for the next fetch (issue 15). A poll is one
    # short Redis script per queue, so 25 ms costs little; 100 ms was still ~130 ms of an SVIP1 notice's
    # wait in the bench.
    worker_idle_poll_ms: int = Field(default=25, ge=10, le=1000)
    # Delay queues (retries after a backoff of 2 s or more, holds until quiet hours end) are polled this
    # often instead: at 25 ms an idle notifications worker spent ~85 ms of CPU a second polling its six
    # queues, ~9% of a core taken from a burst by the five it was not reading (issue 15, fifth pass,
    # round 2). A delayed message is moved to its queue up to this much after its time.
    worker_delay_poll_ms: int = Field(default=1000, ge=10, le=10_000)
    # CPUs this worker process runs on ("0", "0-1,4"; unset: wherever the kernel puts it). Pinned to one
    # core, its threads hand the GIL to each other there instead of across cores: the notifications
    # worker used 20-30% less CPU per email, the no-op actor half (issue 15, seventh pass; affinity).
    worker_cpus: str | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "no-reply@pat-booking.local"
    sms_provider_url: str | None = None
    push_provider_url: str | None = None
    provider_timeout_seconds: float = Field(default=5.0, gt=0)
    outbox_batch_size: int = Field(default=500, ge=1)
    # The notice dispatcher (batch-publisher, `booking run`): woken by each producer's commit (NOTIFY on
    # PostgreSQL), else it looks every this often; a notice dispatched this long ago and still not
    # completed (its job was lost) is dispatched again.
    notice_poll_seconds: float = Field(default=1.0, gt=0)
    notice_redispatch_seconds: int = Field(default=600, ge=1)
    # Standard notices go this many to a job (SVIP and urgent ones alone): Dramatiq's cost per message
    # is paid once per group. 1 sends every notice as a job of its own.
    notice_group_size: int = Field(default=4, ge=1, le=50)
    # Notifications: attempts per channel, backoff between them, and how long a claim on a delivery
    # lasts before another worker may take it over (a worker that died mid-send).
    notification_max_attempts: int = Field(default=5, ge=1, le=50)
    notification_backoff_min_ms: int = Field(default=2_000, ge=0)
    notification_backoff_max_ms: int = Field(default=300_000, ge=0)
    notification_lease_seconds: float = Field(default=120.0, gt=0)
    portal_url: str = "https://portal.example.org"
    # A folder to write emails to as .eml files instead of SMTP (`booking run` uses .booking/mail).
    mail_dir: str | None = None

    @field_validator("worker_cpus")
    @classmethod
    def _cpu_list(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_cpus(value)  # refused at start, not at the first pin
            return value.strip()
        return None


class CronSettings(BookingSettings):
    """One run of the per-minute tasks."""

    outbox_retention_hours: int = Field(default=72, ge=1)
    processed_message_retention_hours: int = Field(default=168, ge=1)
    idempotency_retention_hours: int = Field(default=24, ge=1)
    # Refused requests (access_denied_log) are kept a year, for investigations; the database refuses
    # deleting rows younger than 89 days (revision 0008), so 90 is the least accepted here.
    access_denied_retention_days: int = Field(default=365, ge=90)
    noshow_grace_minutes: int = Field(default=30, ge=0)
    # Optional node-exporter textfile: the run's metrics are written there on exit.
    metrics_textfile: str | None = None
    # Optional Prometheus Pushgateway (http://host:9091): each task's last run is pushed there on exit.
    pushgateway_url: str | None = None


@lru_cache
def get_worker_settings() -> WorkerSettings:
    """A worker's settings, read once per process."""
    return WorkerSettings()


@lru_cache
def get_cron_settings() -> CronSettings:
    """The cron run's settings, read once per process."""
    return CronSettings()
