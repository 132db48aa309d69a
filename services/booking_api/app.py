"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from booking_api.dbwork import DbWork
from booking_api.edge import EDGE_RESPONSES, install_edge
from booking_api.errors import install_error_handlers
from booking_api.metrics import ObservabilityMiddleware
from booking_api.pgpool import asyncpg_pool_like
from booking_api.routes import bookings, catalogue, health, patient, staff
from booking_api.settings import ApiSettings
from booking_api.verifier import build_verifier
from booking_core.db.session import PING_AFTER_IDLE_SECONDS, make_engine, make_session_factory


def pool_options(settings: ApiSettings) -> dict[str, object]:
    """The API's connection pool (PostgreSQL; SQLite keeps make_engine's defaults)."""
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        return {}
    return {"pool_size": settings.db_pool_size, "max_overflow": settings.db_pool_max_overflow}


def create_app(
    settings: ApiSettings | None = None, *, session_factory: sessionmaker[Session] | None = None
) -> FastAPI:
    """Build the API for `settings` (read from the environment by default) and its database."""
    settings = settings or ApiSettings()
    # Fail closed before anything else: no verification settings outside dev, no app (AuthConfigError).
    verifier = build_verifier(settings)
    engine = None
    if session_factory is None:
        engine = make_engine(
            settings.database_url,
            # BOOKING_DB_POOL_PRE_PING: connections that idled are checked before use (make_engine).
            ping_idle_after=PING_AFTER_IDLE_SECONDS if settings.db_pool_pre_ping else None,
            **pool_options(settings),
        )
        session_factory = make_session_factory(engine)

    bind = session_factory.kw["bind"]
    read_session_factory = make_session_factory(bind.execution_options(isolation_level="AUTOCOMMIT"))
    # The slot search's read, awaited on the event loop (booking_api.dbwork); an injected factory (tests)
    # gets one on its database too, so the route runs the same way there.
    db_work = DbWork(
        read_session_factory,
        asyncpg_pool_like(
            bind,
            ping_idle_after=PING_AFTER_IDLE_SECONDS if settings.db_pool_pre_ping else None,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_max_overflow,
        ),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await db_work.dispose()
        if engine is not None:
            engine.dispose()

    app = FastAPI(
        title="pat-booking-be API",
        version="1.0.0",
        description="Patient booking: clinics, slots, bookings, results, recommendations, notifications.",
        lifespan=lifespan,
        # /docs is served by booking_api.edge.docs from local assets; ReDoc is not offered.
        docs_url=None,
        redoc_url=None,
        responses=EDGE_RESPONSES,
        # FastAPI's native telemetry records raw paths (`url.path` holds ids); ObservabilityMiddleware
        # opens the server span named by route template instead.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.verifier = verifier
    app.state.session_factory = session_factory
    app.state.read_session_factory = read_session_factory
    app.state.db_work = db_work
    install_error_handlers(app)
    install_edge(app, settings, session_factory)
    app.add_middleware(ObservabilityMiddleware)  # outermost: refusals at the edge are timed and logged too
    for router in (catalogue.router, bookings.router, patient.router, staff.router, health.router):
        app.include_router(router)
    return app
