"""The training monitor: log tailing, the braille loss plot, and the screen following a live run."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_until
from tui.cli import main
from tui.training_screen import (
    LogTail,
    LossPlot,
    RunLog,
    TrainingMonitorApp,
    TrainingScreen,
    render_plot,
)


def log_lines(records):
    return "".join(json.dumps(r) + "\n" for r in records)


START = {"event": "start", "step": 0, "max_steps": 20}
TRAIN = [{"step": s, "loss": 5.0 / s, "lr": 1e-3, "tokens_per_s": 900.0} for s in range(1, 11)]
EVAL = [{"step": 5, "eval_loss": 1.2}, {"step": 10, "eval_loss": 0.6}]


def test_run_log_follows_a_resumed_run():
    run = RunLog()
    for record in [START, *TRAIN, *EVAL, {"event": "end", "status": "interrupted", "step": 10}]:
        run.feed(record)
    assert run.status == "interrupted" and run.step == 10 and len(run.train) == 10
    run.feed({"event": "start", "step": 8, "max_steps": 20})  # resumed from checkpoint-8
    assert run.status == "running" and [s for s, _ in run.train] == list(range(1, 9))
    assert [s for s, _ in run.eval] == [5]
    run.feed({"step": 9, "loss": 0.5})
    assert run.train[-1] == (9, 0.5)


def test_log_tail_reads_only_whole_new_lines(tmp_path):
    path = tmp_path / "train_log.jsonl"
    tail = LogTail(path)
    assert tail.read() == []
    path.write_text(log_lines(TRAIN[:2]) + '{"step": 3, "lo')
    assert [r["step"] for r in tail.read()] == [1, 2]
    with open(path, "a") as handle:
        handle.write('ss": 1.0}\nnot json\n')
    assert tail.read() == [{"step": 3, "loss": 1.0}]
    path.write_text(log_lines(TRAIN[:1]))  # truncated by a resume: read again from the start
    assert [r["step"] for r in tail.read()] == [1]


def test_render_plot_draws_both_series_in_braille():
    train = [(s, 5.0 / s) for s in range(1, 41)]
    evals = [(10, 0.6), (20, 0.3), (40, 0.2)]
    text = render_plot([(train, "cyan"), (evals, "yellow")], 60, 12)
    lines = text.plain.splitlines()
    assert len(lines) == 12
    assert all(len(line) <= 60 for line in lines)
    assert any(0x2800 < ord(c) <= 0x28FF for c in text.plain)
    assert lines[0].strip().startswith("5")  # the top label is the highest loss
    assert lines[-1].strip().startswith("step 1") and lines[-1].strip().endswith("40")
    styles = {span.style for span in text.spans}
    assert "cyan" in styles and "yellow" in styles
    log_text = render_plot([(train, "cyan")], 60, 12, log_scale=True)
    assert log_text.plain != text.plain
    assert render_plot([], 60, 12).plain == "no loss logged yet"
    assert (
        render_plot([([(1, 2.0)], "cyan")], 60, 12).plain.count("⠀") == 0
    )  # one point, flat range


async def test_screen_follows_a_growing_log(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text(log_lines([START, *TRAIN[:5]]))
    app = TrainingMonitorApp(tmp_path, poll_seconds=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        status = str(screen.query_one("#training-status").render())
        assert "running" in status and "step 5/20" in status and "train loss 1.0000" in status
        plot = screen.query_one(LossPlot)
        assert len(plot.log_data.train) == 5
        assert any(0x2800 < ord(c) <= 0x28FF for c in str(plot.render()))

        with open(log, "a") as handle:
            handle.write(
                log_lines([*TRAIN[5:], *EVAL, {"event": "end", "status": "finished", "step": 10}])
            )
        await wait_until(pilot, lambda: "finished" in status_of(screen))
        status = status_of(screen)
        assert "finished" in status and "eval loss 0.6000" in status and "900 tok/s" in status
        assert len(plot.log_data.train) == 10 and len(plot.log_data.eval) == 2

        await pilot.press("l")
        assert plot.log_scale
        await pilot.press("escape")
    assert app.return_code == 0


def status_of(screen) -> str:
    return str(screen.query_one("#training-status").render())


async def test_screen_waits_for_a_log_that_does_not_exist_yet(tmp_path):
    app = TrainingMonitorApp(tmp_path, poll_seconds=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "Waiting for" in str(app.screen.query_one("#training-status").render())
        (tmp_path / "train_log.jsonl").write_text(log_lines([START, *TRAIN[:3]]))
        await wait_until(pilot, lambda: "step 3/20" in status_of(app.screen))


def test_train_monitor_needs_a_run_directory(tmp_path, capsys):
    assert main(["train-monitor", str(tmp_path / "missing")]) == 2
    assert "no training run" in capsys.readouterr().err


@pytest.mark.parametrize("width", [10, 19])
def test_render_plot_too_small(width):
    assert render_plot([([(1, 1.0), (2, 0.5)], "cyan")], width, 10).plain == "no loss logged yet"


async def test_the_training_monitor_is_in_the_command_palette(tmp_path):
    from engines.fake import FakeEngine
    from sessions.store import Store
    from tui.app import make_app

    app = make_app(store=Store(tmp_path / "c.db"), engine=FakeEngine(["ok"]))
    async with app.run_test(size=(100, 30)):
        titles = [command.title for command in app.get_system_commands(app.screen)]
    assert "Training monitor" in titles
