"""Dramatiq workers (notifications, default, batch-publisher), the per-minute cron, the embedded runner."""
