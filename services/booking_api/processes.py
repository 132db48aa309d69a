"""`booking api` with several workers: uvicorn processes that each accept on a listening socket of their own.

uvicorn's own workers share one listening socket, and the worker that wakes first drains the whole accept
queue (uvloop accepts until it is empty). Keep-alive connections opened together, as an ingress or a load
generator opens them, then land on one worker: in issue 15's bench, 15 of 16 connections went to one of
two workers in some runs, which served on one core while the other idled (booking create 0.28x of
/healthz in such a run, 0.37-0.49x when spread). With one socket per worker, all bound to the same port
with SO_REUSEPORT, the kernel hashes each new connection to one of them: spread evenly, no shared queue.

The supervision is uvicorn's (`Multiprocess`: health pings, SIGINT/SIGTERM to stop every worker
gracefully, SIGHUP to replace them one by one, a worker that failed to start stops the server); only
which socket a worker gets is ours: worker i always serves socket i, and a replacement takes over its
socket, whose queued connections wait for it rather than being lost (the parent keeps every socket open).
"""

from __future__ import annotations

import logging
import socket

from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger(__name__)


def reuse_port_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets bound to host:port with SO_REUSEPORT (port 0: a free port); OSError when anything
    listens there already.

    SO_REUSEPORT would let these join another process's listening sockets on the port (another
    `booking api` left running) and silently share its connections: the port is first bound without it,
    which fails as uvicorn's own bind does when anything is there, and released for the group.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class ReusePortWorkers(Multiprocess):
    """uvicorn's worker supervisor, with worker i on listening socket i (module docstring)."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        if len(sockets) != config.workers:
            raise ValueError(f"{config.workers} workers need as many sockets, got {len(sockets)}")
        super().__init__(config, sockets=sockets)

    def _worker(self, index: int) -> Process:
        process = Process(self.config, [self.sockets[index]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._worker(i) for i in range(len(self.sockets))]

    # uvicorn's own two methods that start workers, each worker on its own socket: theirs would start a
    # replacement on every socket (uvicorn 0.55; tests/api/test_api_processes.py runs both paths).
    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for i, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or already dead
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving: the app or its settings are broken, and every restart would fail
                # the same way.
                log.error("worker [%s] failed to start, stopping the server", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info("worker [%s] died: starting another on its socket", process.pid)
            self.processes[i] = self._worker(i)

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced by a new one on its socket, once the new one is ready."""
        for i, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._worker(i)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    log.error("new worker [%s] was not ready in time: keeping [%s]", new.pid, old.pid)
                return
            old.terminate()
            old.join()
            self.processes[i] = new
