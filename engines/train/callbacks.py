"""Trainer callbacks: the JSONL training log, the progress bar and a clean stop on Ctrl+C.

Imported only from `engines.train.training_run` (it needs transformers). The
log and the bar act on the main process only (`state.is_world_process_zero`),
so a run under torchrun / accelerate writes one log and draws one bar.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from engines.train.progress import ProgressBar

LOG_NAME = "train_log.jsonl"


def append_log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def truncate_log(path: Path, last_step: int) -> None:
    """Drop entries logged after `last_step` (the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") or record.get("step", 0) <= last_step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class JsonlLogCallback(TrainerCallback):
    """One JSON line per log call: step, loss or eval loss, learning rate, tokens/s."""

    def __init__(self, path: Path, start_info: dict | None = None):
        self.path = path
        self.start_info = start_info or {}
        self._last_time = time.perf_counter()
        self._last_tokens: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record: dict = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            record["loss"] = logs["loss"]
            record["lr"] = logs.get("learning_rate")
            if logs.get("grad_norm") is not None:
                record["grad_norm"] = float(logs["grad_norm"])
            if self._last_tokens is not None and now > self._last_time:
                record["tokens_per_s"] = round(
                    (tokens - self._last_tokens) / (now - self._last_time), 1
                )
            record["tokens_seen"] = tokens
            self._last_time, self._last_tokens = now, tokens
        elif "eval_loss" in logs:
            record["eval_loss"] = logs["eval_loss"]
        elif "train_loss" in logs:  # the end-of-training summary
            record["train_loss"] = logs["train_loss"]
        else:
            return
        record["time"] = round(time.time(), 3)
        append_log(self.path, record)

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time, self._last_tokens = time.perf_counter(), state.num_input_tokens_seen
        if state.is_world_process_zero:
            append_log(
                self.path,
                {
                    "event": "start",
                    "step": state.global_step,
                    "max_steps": state.max_steps,
                    **self.start_info,
                    "time": round(time.time(), 3),
                },
            )


class ProgressCallback(TrainerCallback):
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: ProgressBar | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.enabled and state.is_world_process_zero:
            self.bar = ProgressBar(state.max_steps, start_step=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        # A step that logs its loss is drawn from on_log, with that loss.
        logs_now = args.logging_steps and state.global_step % args.logging_steps == 0
        if self.bar and not logs_now:
            self.bar.update(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar and logs:
            self.bar.loss = logs.get("loss", self.bar.loss)
            self.bar.eval_loss = logs.get("eval_loss", self.bar.eval_loss)
            if "loss" in logs:
                self.bar.update(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar:
            self.bar.close()
            self.bar = None


class InterruptCallback(TrainerCallback):
    """On SIGINT / SIGTERM: finish the current step, save a checkpoint, stop. A second Ctrl+C aborts."""

    def __init__(self):
        self.requested = False
        self.stopped_at: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; a TUI worker stops through `request()`
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.requested:  # second press: stop now
            self.uninstall()
            raise KeyboardInterrupt
        self.request()

    def request(self) -> None:
        self.requested = True

    def _agreed(self, args) -> bool:
        """Under several processes, stop when any of them was asked to (they must stop together)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.requested
        import torch

        flag = torch.tensor([1 if self.requested else 0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(args):
            self.requested = True
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
