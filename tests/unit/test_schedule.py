import math

from app.jobs import schedule


def _checks_until_seen(duration: float, webhook: bool) -> int:
    """Status checks made until one sees the job done (a webhook ends the wait first)."""
    t, checks = 0.0, 0
    while True:
        t += schedule.next_check(checks, webhook)
        if webhook and t >= duration:
            return checks
        checks += 1
        if t >= duration:
            return checks


def test_polling_costs_one_check_per_interval():
    for duration in (5, 60, 61, 600):
        assert _checks_until_seen(duration, webhook=False) == math.ceil(
            duration / schedule.STATUS_INTERVAL
        )


def test_webhook_jobs_need_at_most_one_check_for_a_minute():
    assert _checks_until_seen(60, webhook=True) <= 1
    assert _checks_until_seen(600, webhook=True) <= 5


def test_retry_backoff_grows_and_is_capped():
    assert schedule.retry_after(1) < schedule.retry_after(4)
    assert schedule.retry_after(50) <= 300 * 1.2
