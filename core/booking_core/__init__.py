"""Shared core of pat-booking-be: domain, events, settings, telemetry, database."""
