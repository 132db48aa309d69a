"""A throwaway Redis server from Debian's packages."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from booking_testing.procs import InfraError, Server, free_port, start_server, wait_ready


@dataclass
class RedisServer:
    """A running redis-server without persistence."""

    server: Server
    port: int

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()


def start_redis(workdir: Path) -> RedisServer:
    """Start redis-server on a free port; returns once it answers PING."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(exe).exists():
        raise InfraError("redis-server not found: run `make provision` (scripts/infra/debs.sh)")
    port = free_port()
    server = start_server(
        "redis",
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(workdir),
        ],
        workdir=workdir,
    )
    rs = RedisServer(server=server, port=port)

    def ready() -> bool:
        server.check_alive()
        import redis

        return bool(redis.Redis.from_url(rs.url, socket_timeout=1).ping())

    wait_ready(ready, timeout=30, what="Redis to answer PING")
    return rs
