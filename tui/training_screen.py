"""The training monitor: follows a run's `train_log.jsonl` and plots train / eval loss live.

The plot is drawn with Unicode braille characters (2×4 dots per cell), so it
needs nothing beyond Textual and Rich. Opening a finished run shows its whole
curve; a running one is tailed once a second (only new bytes are read).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from engines.i18n import N_, _
from tui.translated import TranslatedBindings

LOG_NAME = "train_log.jsonl"
TRAIN_STYLE = "bold cyan"
EVAL_STYLE = "bold yellow"
# Braille dot bits by (x % 2, y % 4), y counted from the top of the cell.
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@dataclass
class RunLog:
    """What the log says so far; `feed` takes new lines as they arrive."""

    train: list[tuple[int, float]] = field(default_factory=list)
    eval: list[tuple[int, float]] = field(default_factory=list)
    step: int = 0
    max_steps: int = 0
    status: str = "waiting"  # waiting, running, finished, interrupted (RUN_STATUS words)
    tokens_per_s: float | None = None
    lr: float | None = None

    def feed(self, record: dict) -> None:
        """One log record; a damaged one (a loss that is no number, a step of "x") is skipped
        rather than crashing the monitor."""
        try:
            self._feed(record)
        except (TypeError, ValueError, OverflowError):
            pass

    def _feed(self, record: dict) -> None:
        event = record.get("event")
        step = int(record.get("step") or 0)
        if event == "start":
            # A resumed run: forget what the interrupted one logged after its checkpoint.
            self.train = [p for p in self.train if p[0] <= step]
            self.eval = [p for p in self.eval if p[0] <= step]
            self.max_steps = int(record.get("max_steps") or self.max_steps)
            self.status, self.step = "running", step
        elif event == "end":
            status = record.get("status", "finished")
            self.status = status if isinstance(status, str) else "finished"
        elif "loss" in record:
            self.train.append((step, _finite(record["loss"])))
            # optional extras: a damaged one is left out, the loss is kept
            self.tokens_per_s = _finite_or(record.get("tokens_per_s"), self.tokens_per_s)
            self.lr = _finite_or(record.get("lr"), self.lr)
        elif "eval_loss" in record:
            loss = _finite(record["eval_loss"])
            if not self.eval or self.eval[-1][0] != step:
                self.eval.append((step, loss))
        self.step = max(self.step, step)


def _finite(value: object) -> float:
    """A logged number as a float; anything else (text, nan, a list) is a damaged record."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not finite: {number}")
    return number


def _finite_or(value: object, default: float | None) -> float | None:
    try:
        return _finite(value)
    except (TypeError, ValueError):
        return default


class LogTail:
    """Reads whole new lines appended to a file since the last call."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self._partial = b""

    def read(self) -> list[dict]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:  # rewritten (a resumed run truncates it): start over
            self.offset, self._partial = 0, b""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:  # a folder by that name, or unreadable: nothing new to show
            return []
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        records = []
        for line in lines:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                records.append(value)
        return records


def _scale(value: float, log: bool) -> float:
    return math.log10(max(value, 1e-8)) if log else value


def render_plot(
    series: list[tuple[list[tuple[int, float]], str]],
    width: int,
    height: int,
    *,
    log_scale: bool = False,
) -> Text:
    """A braille line chart of (step, value) series, each in its style, with y and x labels."""
    points = [p for data, _style in series for p in data]
    if not points or width < 20 or height < 4:
        return Text(_("no loss logged yet"), style="dim")
    label_w = 9
    cols, rows = width - label_w - 1, height - 2
    px_w, px_h = cols * 2, rows * 4
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    ys = [_scale(p[1], log_scale) for p in points]
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def pixel(step: int, value: float) -> tuple[int, int]:
        x = 0 if x1 == x0 else round((step - x0) / (x1 - x0) * (px_w - 1))
        y = round((y1 - _scale(value, log_scale)) / (y1 - y0) * (px_h - 1))
        return x, y

    cells: dict[tuple[int, int], int] = {}
    styles: dict[tuple[int, int], str] = {}
    for data, style in series:
        previous = None
        for step, value in data:
            x, y = pixel(step, value)
            pixels = [(x, y)] if previous is None else _segment(previous, (x, y))
            for px, py in pixels:
                key = (py // 4, px // 2)
                cells[key] = cells.get(key, 0) | _DOTS[px % 2][py % 4]
                styles[key] = style
            previous = (x, y)

    def y_label(row: int) -> str:
        # The top row is labelled with the highest value, the bottom row with the lowest.
        value = y1 - row / max(rows - 1, 1) * (y1 - y0)
        value = 10**value if log_scale else value
        return f"{value:>{label_w - 1}.3g} "

    text = Text()
    for row in range(rows):
        text.append(y_label(row) if row in (0, rows // 2, rows - 1) else " " * label_w, style="dim")
        text.append("│", style="dim")
        for col in range(cols):
            bits = cells.get((row, col))
            text.append(chr(0x2800 + bits) if bits else " ", style=styles.get((row, col), ""))
        text.append("\n")
    text.append(" " * label_w + "└" + "─" * cols + "\n", style="dim")
    left, right = _("step {step}", step=x0), f"{x1}"
    text.append(
        " " * (label_w + 1) + left + " " * max(1, cols - len(left) - len(right)) + right,
        style="dim",
    )
    return text


def _segment(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    steps = max(abs(b[0] - a[0]), abs(b[1] - a[1]), 1)
    return [
        (round(a[0] + (b[0] - a[0]) * i / steps), round(a[1] + (b[1] - a[1]) * i / steps))
        for i in range(steps + 1)
    ]


class LossPlot(Static):
    """The loss chart; re-rendered on new data and on resize."""

    DEFAULT_CSS = """
    LossPlot { height: 1fr; width: 1fr; padding: 0 1; }
    """

    def __init__(self, **kwargs):
        super().__init__("", **kwargs)
        self.log_data = RunLog()
        self.log_scale = False

    def redraw(self) -> None:
        size = self.content_size
        series = [(self.log_data.train, TRAIN_STYLE), (self.log_data.eval, EVAL_STYLE)]
        self.update(render_plot(series, size.width, size.height, log_scale=self.log_scale))

    def on_resize(self) -> None:
        self.redraw()


# What the status line says for a run's status (the log's own word when it is another).
RUN_STATUS = {
    "waiting": N_("waiting"),
    "running": N_("running"),
    "finished": N_("finished"),
    "interrupted": N_("interrupted"),
}


def status_line(run: RunLog, run_dir: Path) -> Text:
    text = Text()
    text.append(f"{run_dir}  ", style="bold")
    text.append(
        _(RUN_STATUS[run.status]) if run.status in RUN_STATUS else run.status,
        style={"finished": "green", "interrupted": "red"}.get(run.status, "yellow"),
    )
    total = f"/{run.max_steps}" if run.max_steps else ""
    text.append(_("  step {step}{total}", step=run.step, total=total))
    if run.train:
        text.append(_("  train loss "))
        text.append(f"{run.train[-1][1]:.4f}", style=TRAIN_STYLE)
    if run.eval:
        text.append(_("  eval loss "))
        text.append(f"{run.eval[-1][1]:.4f}", style=EVAL_STYLE)
    if run.tokens_per_s:
        text.append("  " + _("{rate} tok/s", rate=f"{run.tokens_per_s:.0f}"))
    if run.lr is not None:
        text.append(f"  lr {run.lr:.2e}")
    return text


class TrainingScreen(TranslatedBindings, Screen):
    """Follows the training run in `run_dir` (its `--out` directory) and plots its loss."""

    BINDINGS = [
        Binding("escape", "close", N_("Close")),
        Binding("l", "toggle_log", N_("Log scale")),
        Binding("r", "reload", N_("Reload")),
    ]

    def __init__(self, run_dir: Path, *, poll_seconds: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.run_dir = Path(run_dir)
        self.poll_seconds = poll_seconds
        self._tail = LogTail(self.run_dir / LOG_NAME)

    def compose(self) -> ComposeResult:
        yield Static(id="training-status")
        yield LossPlot(id="loss-plot")
        yield Static(
            Text.assemble((_("⣿ train loss"), TRAIN_STYLE), "   ", (_("⣿ eval loss"), EVAL_STYLE)),
            id="training-legend",
        )
        yield Footer()

    @property
    def run(self) -> RunLog:
        return self.query_one(LossPlot).log_data

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(self.poll_seconds, self.poll)

    def poll(self) -> None:
        records = self._tail.read()
        plot = self.query_one(LossPlot)
        if self._tail.offset == 0 and not self._tail.path.exists():
            self.query_one("#training-status", Static).update(
                Text(_("Waiting for {path} …", path=self._tail.path), style="dim")
            )
            return
        for record in records:
            plot.log_data.feed(record)
        if records:
            plot.redraw()
        self.query_one("#training-status", Static).update(status_line(plot.log_data, self.run_dir))

    def action_toggle_log(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_scale = not plot.log_scale
        plot.redraw()

    def action_reload(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_data = RunLog()
        self._tail = LogTail(self.run_dir / LOG_NAME)
        self.poll()
        plot.redraw()

    def action_close(self) -> None:
        if isinstance(self.app, TrainingMonitorApp):
            self.app.exit()
        else:
            self.app.pop_screen()


class TrainingMonitorApp(App):
    """`cosplay train-monitor DIR`: the training screen on its own."""

    TITLE = N_("Cosplay training monitor")
    BINDINGS = [Binding("q", "quit", N_("Quit"))]

    def __init__(self, run_dir: Path, *, poll_seconds: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.title = _(self.TITLE)
        self.run_dir = run_dir
        self.poll_seconds = poll_seconds

    def on_mount(self) -> None:
        self.push_screen(TrainingScreen(self.run_dir, poll_seconds=self.poll_seconds))

    def notify(self, message: str, *, markup: bool = False, **kwargs) -> None:
        """As in the chat app: a notification is text (a run folder may be named `[b]x`)."""
        super().notify(message, markup=False, **kwargs)


def run_monitor_app(run_dir: Path) -> None:
    from engines.base import CosplayError

    if not run_dir.is_dir():
        raise CosplayError(
            _(
                "There is no training run in {path}; pass the --out directory of `cosplay train`.",
                path=run_dir,
            )
        )
    TrainingMonitorApp(run_dir).run()
