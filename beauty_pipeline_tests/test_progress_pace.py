"""The CLI's progress lines: each task's pace (units/s) and the time it has left."""

from __future__ import annotations

import io

from beauty_pipeline.console import ProgressView, pace_text
from beauty_pipeline.progress import ProgressEvent


class Clock:
    """A hand-wound clock, so the pace is exact."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pace_text_says_rate_and_time_left():
    assert pace_text(None, 0, 10) == ""
    assert pace_text(4.0, 40, 400) == "4.0/s, 0:01:30 left"
    assert pace_text(0.5, 10, 10) == "30.0/min"


def test_log_lines_show_pace_and_time_left_then_the_finished_rate():
    stream = io.StringIO()
    view = ProgressView(stream)
    view.clock = clock = Clock()
    view(ProgressEvent("random variant: background plates", 0, 320))
    clock.now += 40
    view(ProgressEvent("random variant: background plates", 160, 320))  # due: 30 s passed
    clock.now += 5
    view(ProgressEvent("random variant: background plates", 192, 320))  # not due yet
    clock.now += 35
    view(ProgressEvent("random variant: background plates", 320, 320))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "  [random variant: background plates] 160/320 so far (4.0/s, 0:00:40 left)",
        "  [random variant: background plates] 320/320 done (4.0/s)"]


def test_a_task_that_starts_over_is_timed_afresh():
    stream = io.StringIO()
    view = ProgressView(stream)
    view.clock = clock = Clock()
    view(ProgressEvent("epochs", 0, 4))
    clock.now += 8
    view(ProgressEvent("epochs", 4, 4))
    view(ProgressEvent("epochs", 0, 2))
    clock.now += 1
    view(ProgressEvent("epochs", 2, 2))
    assert stream.getvalue().splitlines() == ["  [epochs] 4/4 done (30.0/min)",
                                              "  [epochs] 2/2 done (2.0/s)"]
