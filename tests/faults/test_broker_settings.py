"""The broker never cuts a long conversion off: its consumer timeout outlasts the longest one the workers allow."""

import re
import subprocess

import pytest

pytestmark = [pytest.mark.faults]


def test_consumer_timeout_outlasts_the_hard_time_limit(settings):
    # A conversion keeps its message unacknowledged until it ends (acks_late). RabbitMQ closes the channel of a
    # consumer holding a message longer than consumer_timeout, which would hand a running job to another worker.
    completed = subprocess.run(
        ["rabbitmqctl", "eval", "application:get_env(rabbit, consumer_timeout)."],
        capture_output=True, text=True, check=True, timeout=60,
    )
    match = re.search(r"\{ok,(\d+)\}", completed.stdout)
    assert match, f"consumer_timeout is not set on the broker (default 30 min): {completed.stdout!r}"
    assert int(match.group(1)) > settings.CONVERSION_HARD_TIME_LIMIT * 1000
