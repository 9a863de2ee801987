"""A one-line terminal progress bar for training: step, loss, it/s and ETA. No dependencies."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from engines.i18n import _


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


def format_progress(
    step: int,
    total: int,
    *,
    loss: float | None,
    rate: float | None,
    eta: float | None,
    eval_loss: float | None = None,
    width: int = 24,
) -> str:
    """`step 12/40 |██████░░░░| loss 2.310 eval 2.400 3.21 it/s ETA 0:08`."""
    total = max(total, 1)
    filled = min(width, int(width * step / total))
    bar = "█" * filled + "░" * (width - filled)
    parts = [_("step {step}/{total}", step=step, total=total), f"|{bar}|"]
    parts.append(_("loss {loss}", loss=f"{loss:.4f}" if loss is not None else "–"))
    if eval_loss is not None:
        parts.append(_("eval {loss}", loss=f"{eval_loss:.4f}"))
    parts.append(f"{rate:.2f} it/s" if rate else "– it/s")
    parts.append(_("ETA {time}", time=format_duration(eta) if eta is not None else "–"))
    return " ".join(parts)


class ProgressBar:
    """Redraws one line on a terminal; on a pipe or file prints a line every ~5% instead."""

    def __init__(self, total: int, *, start_step: int = 0, stream: TextIO | None = None):
        self.total = total
        self.start_step = start_step
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self.loss: float | None = None
        self.eval_loss: float | None = None
        self._last_printed = start_step

    def update(self, step: int) -> None:
        done = step - self.start_step
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        eta = (self.total - step) / rate if rate else None
        line = format_progress(
            step, self.total, loss=self.loss, rate=rate, eta=eta, eval_loss=self.eval_loss
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
            return
        every = max(1, self.total // 20)
        if step != self._last_printed and (
            step == self.total or step - self._last_printed >= every
        ):
            self._last_printed = step
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
