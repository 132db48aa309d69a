"""`booking api`: the booking API under uvicorn with ApiSettings' host, port and workers."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

import uvicorn
from fastapi import FastAPI

from booking_api.httpserver import uvicorn_limits
from booking_api.settings import ApiSettings, get_api_settings
from booking_core.logs import configure_logging
from booking_core.telemetry import configure_telemetry

log = logging.getLogger(__name__)


def worker_app() -> FastAPI:
    """The app of one uvicorn worker process: logging and tracing first, then the app."""
    settings = ApiSettings()
    configure_logging(settings.log_level, settings.log_format)
    configure_telemetry("booking-api")
    from booking_api.app import create_app

    return create_app(settings)


def cli(args: argparse.Namespace) -> int:
    """Entry point of `booking api`."""
    settings = get_api_settings()
    configure_logging(settings.log_level, settings.log_format)
    from booking_api.verifier import AuthConfigError, build_verifier

    try:
        verifier = build_verifier(settings)
    except AuthConfigError as exc:
        # Fail closed, before binding the port: the message names the missing or unsafe setting.
        sys.stderr.write(f"booking api: refusing to start: {exc}\n")
        return 2
    log.info("token verification", extra={"mode": verifier.mode, "environment": settings.environment})
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker is a process: /metrics must aggregate them (set before any worker imports prometheus).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="booking-api-metrics-")
    uvicorn.run(
        "booking_api.main:worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,  # our JSON logging: no raw tracebacks with row values
        access_log=False,  # the middleware logs route templates, not raw paths
        timeout_graceful_shutdown=20,
        **uvicorn_limits(settings),
    )
    return 0
