"""The one `wait_for`: it returns what the condition found, waits through listed errors, names the wait."""

from __future__ import annotations

import itertools
import time

import pytest

from booking_testing.procs import InfraError, wait_ready
from booking_testing.wait import WaitTimeoutError, wait_for


def test_it_returns_the_first_truthy_value() -> None:
    calls = itertools.count(1)
    assert wait_for(lambda: [n] if (n := next(calls)) >= 3 else [], timeout=5, interval=0.001) == [3]


def test_a_listed_error_means_not_yet_and_an_unlisted_one_propagates() -> None:
    calls = itertools.count(1)

    def booting() -> str:
        if next(calls) < 3:
            raise ConnectionError("refused")
        return "up"

    assert wait_for(booting, timeout=5, interval=0.001, ignore=(ConnectionError,)) == "up"
    with pytest.raises(KeyError):
        wait_for(lambda: {}["x"], timeout=5, ignore=(ConnectionError,))


def test_the_timeout_names_the_wait_the_last_error_and_the_details() -> None:
    def refused() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(WaitTimeoutError) as caught:
        wait_for(
            refused, timeout=0.05, what="the server", interval=0.01, ignore=(OSError,), details=lambda: "TAIL"
        )
    text = str(caught.value)
    assert "waiting for the server" in text and "ConnectionError('refused')" in text and "TAIL" in text
    assert isinstance(caught.value, AssertionError)  # a test that times out fails, it does not error


def test_a_slow_condition_that_holds_by_the_deadline_is_not_wasted() -> None:
    tries: list[float] = []

    def slow() -> bool:
        tries.append(1)
        time.sleep(0.06)  # the condition itself takes longer than the whole timeout
        return len(tries) >= 2

    assert wait_for(slow, timeout=0.05, interval=0.001)
    assert len(tries) == 2  # the try that started after the deadline counted


def test_a_launcher_wait_raises_infra_errors() -> None:
    with pytest.raises(InfraError, match="Redis to answer"):
        wait_ready(lambda: 1 / 0, timeout=0.05, what="Redis to answer PING", interval=0.01)
