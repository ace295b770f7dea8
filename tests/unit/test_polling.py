"""`wait_until`: the one poll helper, on an injected clock (no real sleeping)."""

from __future__ import annotations

from relevo.polling import wait_until


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_true_at_once_does_not_sleep() -> None:
    """A predicate already true returns True without a single sleep."""
    fake = FakeTime()
    assert wait_until(lambda: True, 5.0, 0.1, clock=fake.clock, sleep=fake.sleep) is True
    assert fake.sleeps == []


def test_becomes_true_after_some_polls() -> None:
    """The predicate is asked every interval until it holds; True then, with the time it took."""
    fake = FakeTime()
    answers = iter([False, False, False, True])
    assert wait_until(lambda: next(answers), 5.0, 0.1, clock=fake.clock, sleep=fake.sleep) is True
    assert fake.sleeps == [0.1, 0.1, 0.1]


def test_times_out_with_a_last_look_at_the_deadline_and_never_sleeps_past_it() -> None:
    """Never true: False once the timeout has passed, the last sleep cut to the deadline, and the
    predicate asked once more at the deadline itself."""
    fake = FakeTime()
    asked: list[float] = []

    def never() -> bool:
        asked.append(fake.now)
        return False

    assert wait_until(never, 0.25, 0.1, clock=fake.clock, sleep=fake.sleep) is False
    assert [round(s, 9) for s in fake.sleeps] == [0.1, 0.1, 0.05]
    assert round(asked[-1], 9) == 100.25


def test_no_time_to_wait_still_asks_once() -> None:
    """A zero timeout is one look, no sleep."""
    fake = FakeTime()
    asked: list[int] = []
    assert wait_until(lambda: asked.append(1), 0.0, 0.1, clock=fake.clock, sleep=fake.sleep) is False
    assert asked == [1] and fake.sleeps == []
