"""The command line's one progress display, where standard error is not a terminal: periodic lines."""

import io

from tts.progress import ProgressDisplay


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_every_interval_and_once_at_the_total():
    stream, clock = io.StringIO(), Clock()
    show = ProgressDisplay("corpus", "h", scale=3600, digits=2, every_s=60, elapsed=True, stream=stream, clock=clock)
    show(900, 3600)  # too soon after the start
    clock.now = 61
    show(1800, 3600)
    clock.now = 70
    show(2700, 3600)  # too soon after the last line
    show(3600, 3600)  # the total: at once
    show(3600, 3600)  # but only once
    assert stream.getvalue().splitlines() == ["corpus: 0.50 / 1.00 h (50%), 1.0 min",
                                              "corpus: 1.00 / 1.00 h (100%), 1.2 min"]


def test_notes_and_silence_when_asked():
    stream, clock = io.StringIO(), Clock()
    show = ProgressDisplay("narrating", "chunks", every_s=10, stream=stream, clock=clock)
    clock.now = 10
    show(3, 7, "audio 0:00:12, 1.50x real time")
    assert stream.getvalue() == "narrating: 3 / 7 chunks (43%), audio 0:00:12, 1.50x real time\n"
    quiet = io.StringIO()
    with ProgressDisplay("speaking", "steps", every_s=None, stream=quiet, clock=clock) as show:
        clock.now = 1000
        show(5, 5)
    assert quiet.getvalue() == ""
