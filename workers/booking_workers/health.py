"""Worker liveness: each queue's consumer thread beats when it fetches; a message stuck in an actor fails it.

Dramatiq has no idle hook, so the broker's `consume` is wrapped: the consumer thread calls `next()` on
what it returns at least once per worker timeout (a second) even when the queue is empty. A wedged
worker thread does not stop fetching (prefetch just fills up), so messages in progress are timed too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import dramatiq
from dramatiq.broker import Consumer, MessageProxy

from booking_core.health import Liveness


class _BeatingConsumer(Consumer):
    """A broker consumer that reports every completed fetch, message or not.

    It also wakes its consumer thread when a message in progress is done. With its prefetch taken
    (`queue_prefetch` messages fetched and not yet acked), Dramatiq's Redis consumer sleeps a growing
    backoff (5, 10, 20 ms, up to the worker timeout) before it looks again, so a worker thread that
    finished a job waited idle for its next one: 40% of the notifications worker's threads' time in
    issue 15's wall-clock profile. Here it waits for the next ack instead, at most as long.
    """

    def __init__(self, inner: Consumer, beat: Callable[[], None]) -> None:
        self._inner = inner
        self._beat = beat
        self._freed = threading.Event()

    def __iter__(self) -> _BeatingConsumer:
        return self

    def _full(self) -> bool:
        inner: Any = self._inner
        try:  # the Redis consumer's bookkeeping; other brokers' consumers are left as they are
            return not inner.message_cache and inner.outstanding_message_count >= inner.prefetch
        except AttributeError:
            return False

    def __next__(self) -> MessageProxy | None:
        if self._full():
            self._freed.clear()
            if self._full():  # still: an ack between the two checks set the event before the clear
                self._freed.wait(getattr(self._inner, "timeout", 1000) / 1000)
                self._beat()
                return None  # the consumer thread handles due delayed messages and asks again
        message = next(self._inner)
        self._beat()
        return message

    def ack(self, message: MessageProxy) -> None:
        try:
            self._inner.ack(message)
        finally:
            self._freed.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            self._inner.nack(message)
        finally:
            self._freed.set()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        self._inner.requeue(messages)

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class InFlight(dramatiq.Middleware):
    """Times each message in progress; one older than the limit means a wedged worker thread."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[str, tuple[str, float]] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        with self._lock:
            self._started[message.message_id] = (message.actor_name, self._clock())

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self._done(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._done(message)

    def _done(self, message: MessageProxy) -> None:
        with self._lock:
            self._started.pop(message.message_id, None)

    def problem(self) -> str | None:
        """The oldest message over the limit (its actor, never its arguments), or None."""
        now = self._clock()
        with self._lock:
            stuck = [(now - t, actor) for actor, t in self._started.values() if now - t > self.max_age]
        if not stuck:
            return None
        age, actor = max(stuck)
        return f"a {actor} message in progress for {age:.0f}s (limit {self.max_age:.0f}s)"


def watch(broker: dramatiq.Broker, liveness: Liveness, max_message_seconds: float) -> None:
    """Make the worker on `broker` report its fetches and its messages in progress to `liveness`."""
    consume = broker.consume

    def beating(queue_name: str, prefetch: int = 1, timeout: int = 30000) -> Consumer:
        inner = consume(queue_name=queue_name, prefetch=prefetch, timeout=timeout)
        return _BeatingConsumer(inner, lambda: liveness.beat(f"queue {queue_name}"))

    broker.consume = beating  # type: ignore[method-assign]
    in_flight = InFlight(max_message_seconds)
    broker.add_middleware(in_flight)
    liveness.add_check(in_flight.problem)
