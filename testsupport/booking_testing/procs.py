"""Process plumbing for the test infrastructure: free ports, deadlines, background servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from booking_testing.wait import WaitTimeoutError, wait_for

T = TypeVar("T")

CACHE_ROOT = Path(os.environ.get("PAT_BOOKING_CACHE", Path.home() / ".cache" / "pat-booking"))


class InfraError(RuntimeError):
    """A part of the test infrastructure could not be started; the message includes its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_ready(cond: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """`wait_for` a server to boot: any error of `cond` means "not yet", a timeout is an InfraError."""
    return wait_for(
        cond, timeout=timeout, what=what, interval=interval, ignore=(Exception,), error=InfraError
    )


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Server:
    """A background process with its log file; stopped by stop() or via its pid file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    pidfile: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def check_alive(self) -> None:
        """Raise InfraError with the log tail when the process has exited."""
        if self.proc.poll() is not None:
            raise InfraError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        stop_pid(self.proc.pid, timeout=timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1)
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)


def start_server(
    name: str,
    argv: Sequence[str],
    *,
    workdir: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> Server:
    """Start argv in its own session with output to workdir/<name>.log and a pid file beside it."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    fh = log.open("ab")
    proc = subprocess.Popen(
        list(argv),
        stdout=fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=workdir,
        start_new_session=True,  # infra-up leaves servers running after the CLI exits
        user=user,
    )
    fh.close()
    pidfile = workdir / f"{name}.pid"
    pidfile.write_text(str(proc.pid))
    return Server(name=name, proc=proc, log=log, pidfile=pidfile)


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """Stop a process group started by start_server; quiet if it is gone already."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        with contextlib.suppress(WaitTimeoutError):  # still there: the next, harder signal
            wait_for(lambda: _gone(pid), timeout=timeout, what=f"process {pid} to exit")
            return


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        # reap it if it is our child, or it stays a zombie and kill(0) keeps succeeding
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def run_checked(argv: Sequence[str], *, what: str, user: str | None = None, cwd: Path | None = None) -> str:
    """Run a short command; raise InfraError with its output when it fails."""
    res = subprocess.run(list(argv), capture_output=True, text=True, user=user, cwd=cwd, check=False)
    if res.returncode != 0:
        raise InfraError(f"{what} failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res.stdout
