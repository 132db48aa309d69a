"""Prometheus metrics of the workers and the cron run; labels never carry patient data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

NOTIFICATIONS = Counter(
    "booking_notifications_total",
    "Notification delivery outcomes by channel (sent, transient/permanent_failure, gave_up, duplicate)",
    ["channel", "outcome"],
)
NOTIFICATION_LATENCY = Histogram(
    "booking_notification_delivery_seconds",
    "Time from the first enqueue of a notification to its delivery, by channel",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 43200),
)
NOTIFICATION_RETRIES = Counter(
    "booking_notification_retries_total", "Notification deliveries scheduled for another attempt", ["channel"]
)
NOTIFICATIONS_HELD = Counter(
    "booking_notifications_held_total", "Notifications held until the end of the patient's quiet hours"
)
CRON_DURATION = Histogram(
    "booking_cron_task_duration_seconds",
    "Duration of one cron task",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CRON_FAILURES = Counter("booking_cron_task_failures_total", "Cron tasks that raised", ["task"])
CRON_ITEMS = Counter("booking_cron_task_items_total", "Rows a cron task acted on", ["task"])
CRON_LAST_SUCCESS = Gauge(
    "booking_cron_task_last_success_timestamp_seconds",
    "Unix time of the task's last successful run",
    ["task"],
)
CRON_RUNS = Counter(
    "booking_cron_task_runs_total",
    "Cron task runs by status (ok, failed, skipped), as reported by each `booking cron` run",
    ["task", "status"],
)
