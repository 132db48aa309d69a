from booking_workers.notifications.policy import RetryPolicy


def test_backoff_grows_and_is_capped() -> None:
    p = RetryPolicy(max_attempts=5, min_backoff_ms=1000, max_backoff_ms=10_000)
    assert 500 <= p.backoff_ms(1) <= 1000
    assert 2000 <= p.backoff_ms(3) <= 4000
    assert p.backoff_ms(20) <= 10_000


def test_retry_after_wins_when_longer_but_stays_capped() -> None:
    p = RetryPolicy(max_attempts=5, min_backoff_ms=100, max_backoff_ms=10_000)
    assert p.backoff_ms(1, retry_after_s=3) == 3000
    assert p.backoff_ms(1, retry_after_s=60) == 10_000


def test_attempts_are_bounded() -> None:
    p = RetryPolicy(max_attempts=3)
    assert not p.exhausted(2)
    assert p.exhausted(3)
