"""Liveness, readiness and Prometheus metrics (outside /api/v1, no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from booking_api.errors import R503, unavailable_response
from booking_api.metrics import render_metrics
from booking_api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The event loop is alive (no dependencies checked)."""
    # async on purpose: answered by the event loop itself, so a wedged loop fails the liveness probe
    # (a sync endpoint would run in the thread pool and be starved by a busy pool instead).
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=R503)
def readyz(request: Request) -> Response:
    """The database answers; 503 otherwise."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    try:
        with factory() as session:
            session.execute(text("SELECT 1"))
    except Exception:  # any failure to reach the database means not ready
        return unavailable_response()
    return Response(Health(status="ready").model_dump_json(), media_type="application/json")


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics() -> Response:
    """Prometheus exposition."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
