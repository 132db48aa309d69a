"""Building the app with edge settings of a test's choosing, on a migrated and seeded database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from booking_api.app import create_app
from booking_api.settings import ApiSettings
from booking_core.db.migrate import upgrade
from booking_core.db.session import make_engine, make_session_factory

from .conftest import Api, seed_world


@contextmanager
def edge_api(db_url: str, base_url: str = "http://testserver", **settings: Any) -> Iterator[Api]:
    """The app with `settings` over a fresh migrated, seeded database."""
    upgrade(db_url)
    cfg = ApiSettings(database_url=db_url, **settings)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        world = seed_world(s, datetime.now(UTC))
    app = create_app(cfg, session_factory=sessions)
    with TestClient(app, base_url=base_url, raise_server_exceptions=False) as client:
        yield Api(client=client, sessions=sessions, settings=cfg, world=world)
    engine.dispose()


@contextmanager
def served(app: Any, **config: Any) -> Iterator[int]:
    """`app` under a real uvicorn server in a thread; yields its port."""
    import threading
    import time

    import uvicorn

    from booking_testing.procs import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def raw_exchange(port: int, head: bytes, body: bytes = b"", timeout: float = 10.0) -> tuple[bytes, int]:
    """Send `head` then as much of `body` as the server takes; the answer and how many body bytes went."""
    import socket

    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            view = memoryview(body)
            while sent < len(body):
                sent += sock.send(view[sent : sent + 65536])
        except OSError:
            pass  # the server closed its side after answering
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except OSError:
            pass
    return b"".join(chunks), sent
