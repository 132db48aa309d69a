"""The one `wait_for` of the tests, the e2e suite, the benchmarks and the launchers: poll with a deadline.

No bare sleeps: a test waits for the state it needs, up to a deadline, and fails naming what it waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The condition did not hold before the deadline (an AssertionError, so a test reports a failure)."""


def wait_for(
    cond: Callable[[], T],
    *,
    timeout: float,
    what: str = "the condition",
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
    error: type[Exception] = WaitTimeoutError,
    details: Callable[[], str] | None = None,
) -> T:
    """Call `cond` every `interval` seconds until it returns something truthy, and return that.

    Exceptions of the `ignore` types count as "not yet" (a server still booting); the last one is named
    in the error. After `timeout` seconds `error` is raised with `what`, the last error and `details()`
    (a log tail, say). `cond` is always tried once more at the deadline, so a slow poll is not wasted.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        expired = time.monotonic() >= deadline
        try:
            value = cond()
            if value:
                return value
        except ignore as exc:
            last = exc
        if expired:
            message = f"timed out after {timeout:g}s waiting for {what}"
            if last is not None:
                message += f" (last error: {last!r})"
            if details is not None:
                message += "\n" + details()
            raise error(message)
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
