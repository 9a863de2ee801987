"""The terminal progress bar: step, loss, it/s and ETA."""

from __future__ import annotations

import io

from engines.train.progress import ProgressBar, format_duration, format_progress


def test_format_progress_line():
    line = format_progress(10, 40, loss=2.3104, rate=3.2, eta=9.4, eval_loss=2.5, width=8)
    assert line == "step 10/40 |██░░░░░░| loss 2.3104 eval 2.5000 3.20 it/s ETA 0:09"
    assert format_progress(0, 40, loss=None, rate=None, eta=None, width=4) == (
        "step 0/40 |░░░░| loss – – it/s ETA –"
    )


def test_format_duration():
    assert format_duration(5) == "0:05"
    assert format_duration(125) == "2:05"
    assert format_duration(3725) == "1:02:05"


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_bar_redraws_one_line_on_a_terminal():
    stream = FakeTTY()
    bar = ProgressBar(10, stream=stream)
    bar.loss = 1.5
    for step in range(1, 11):
        bar.update(step)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r\x1b[2K") == 10 and text.endswith("\n") and text.count("\n") == 1
    assert "step 10/10" in text and "loss 1.5000" in text and "it/s" in text


def test_bar_prints_about_twenty_lines_on_a_pipe():
    stream = io.StringIO()
    bar = ProgressBar(100, start_step=0, stream=stream)
    for step in range(1, 101):
        bar.update(step)
        bar.update(step)  # drawn twice for one step: printed at most once
    lines = stream.getvalue().splitlines()
    assert 18 <= len(lines) <= 21 and lines[-1].startswith("step 100/100")
    assert "ETA 0:00" in lines[-1]
