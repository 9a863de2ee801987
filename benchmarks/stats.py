"""What every benchmark here shares: interleaved runs, each in its own process, and ratios
reported as median with [min, max] — never a bare time as the result.

A measurement is a set of *series* (ours, raw; or the 10-message anchor and each size). They
run in rounds: every round runs each series once, forwards in even rounds and backwards in odd
ones (A,B then B,A …), so drift on a shared machine and "who ran first" hit every series
alike. Each run is normally a separate process: the benchmark script started again with
`--child …`, which prints one line `BENCH-RESULT {json}` (`emit`); `run_child` starts it,
enforces a timeout and parses that line. A ratio is taken per round (A's run ÷ B's run of the
same round), then summarised over the rounds: {"median", "min", "max", "n"} — plus "timeouts"
or "errors" when some runs did not finish.

Pure Python (no third-party imports): the tests import it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH-RESULT "


# --- runs that did not finish ------------------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """A run that timed out (`timeout` is the limit it ran into) or failed."""

    reason: str  # "timeout", "error" or "skipped"
    timeout: float | None = None
    detail: str = ""
    partial: dict | None = None  # what a timed-out child emitted before it was stopped

    def __str__(self) -> str:
        if self.reason == "timeout":
            return f"> {self.timeout:g} s (timeout)"
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class RunFailed(Exception):
    def __init__(self, failure: Failed):
        super().__init__(str(failure))
        self.failure = failure


def ok(value: Any) -> bool:
    return not isinstance(value, Failed) and value is not None


# --- children ----------------------------------------------------------------------------------


def emit(result: dict) -> None:
    """A child's one result line (the parent ignores everything else it prints)."""
    print(RESULT_MARK + json.dumps(result, ensure_ascii=False), flush=True)


def serve_child(children: dict) -> bool:
    """In a child process (`--child NAME CONFIG_JSON`, as `run_child` starts it): run that
    child, emit its result and say so; False in the parent."""
    if len(sys.argv) < 2 or sys.argv[1] != "--child":
        return False
    emit(children[sys.argv[2]](json.loads(sys.argv[3])))
    return True


def parse_result(stdout: str) -> dict | None:
    """The last result line a child printed (a child may emit a partial result first, e.g.
    the TUI's open time before it exits)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            try:
                return json.loads(line[len(RESULT_MARK) :])
            except ValueError:  # cut off by a kill
                continue
    return None


def _run(cmd: Sequence[str], *, timeout: float, env: dict | None, cwd: Path | None, capture: bool):
    """Run `cmd` in its own process group; on timeout kill the whole group (a TUI child's
    threads, a cosplay child's workers). Returns (returncode, stdout, stderr, seconds)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(map(str, cmd)),
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        partial = parse_result(out or "")
        raise RunFailed(Failed("timeout", timeout, " ".join(map(str, cmd[:4])), partial)) from None
    except BaseException:  # Ctrl+C: leave nothing running behind
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    return proc.returncode, out or "", err or "", time.perf_counter() - started


def run_child(
    script: str | Path,
    args: Sequence[Any],
    *,
    timeout: float,
    env: dict | None = None,
) -> dict:
    """Run `python SCRIPT --child ARGS…` and return the JSON it emitted; RunFailed when it
    timed out, exited non-zero or emitted nothing."""
    cmd = [sys.executable, str(script), "--child", *map(str, args)]
    code, out, err, _ = _run(
        cmd, timeout=timeout, env=env, cwd=Path(script).resolve().parents[1], capture=True
    )
    result = parse_result(out)
    if code != 0 or result is None:
        tail = (err.strip() or out.strip())[-1500:]
        raise RunFailed(
            Failed("error", detail=f"{Path(script).name} {args[:1]} exit {code}: {tail}")
        )
    return result


def time_command(
    cmd: Sequence[Any], *, timeout: float, env: dict | None = None, cwd: Path | None = None
) -> float:
    """Wall-clock seconds of a whole process (start-up included), output discarded; RunFailed
    when it times out or exits non-zero."""
    code, _, err, seconds = _run(cmd, timeout=timeout, env=env, cwd=cwd, capture=False)
    if code != 0:
        raise RunFailed(
            Failed(
                "error", detail=f"{' '.join(map(str, cmd[:3]))} exit {code}: {err.strip()[-800:]}"
            )
        )
    return seconds


# --- interleaving --------------------------------------------------------------------------------


def schedule(labels: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of the runs: every label once per round, forwards in even rounds and
    backwards in odd ones (two series: A,B, B,A, A,B, …)."""
    order = list(labels)
    return [order if r % 2 == 0 else order[::-1] for r in range(rounds)]


def interleave(
    rounds: int,
    runners: dict[str, Callable[[int], Any]],
    *,
    skip: Callable[[str, dict[str, list[Any]]], Failed | None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, list[Any]]:
    """Run each runner once per round in `schedule` order; runner(round) returns the run's
    value or raises RunFailed. Returns {label: [value or Failed, one per round]}.

    `skip(label, results so far)` may return a Failed to record instead of running (e.g. a
    size that timed out before is not run again)."""
    results: dict[str, list[Any]] = {label: [] for label in runners}
    for r, order in enumerate(schedule(list(runners), rounds)):
        for label in order:
            skipped = skip(label, results) if skip else None
            if skipped is not None:
                value: Any = skipped
            else:
                started = time.perf_counter()
                try:
                    value = runners[label](r)
                except RunFailed as exc:
                    value = exc.failure
                if log:
                    took = time.perf_counter() - started
                    shown = str(value) if isinstance(value, Failed) else f"{took:.1f} s"
                    log(f"  round {r + 1}/{rounds} {label}: {shown}")
            results[label].append(value)
    return results


# --- summaries -----------------------------------------------------------------------------------


def summary(values: Iterable[Any], digits: int = 3) -> dict:
    """{"median", "min", "max", "n"} of the values that finished; "timeouts"/"errors" count
    the ones that did not (a Failed, or None)."""
    values = list(values)
    good = [float(v) for v in values if ok(v) and not math.isnan(float(v))]
    result: dict[str, Any] = {
        "median": round(statistics.median(good), digits) if good else None,
        "min": round(min(good), digits) if good else None,
        "max": round(max(good), digits) if good else None,
        "n": len(good),
    }
    timeouts = [v for v in values if isinstance(v, Failed) and v.reason == "timeout"]
    errors = len(values) - len(good) - len(timeouts)
    if timeouts:
        result["timeouts"] = len(timeouts)
        result["timeout_s"] = max(v.timeout or 0 for v in timeouts)
    if errors:
        result["errors"] = errors
    return result


def per_round(
    numerators: Sequence[Any], denominators: Sequence[Any], combine: Callable[[float, float], float]
) -> list[Any]:
    """combine(a, b) for each round; a round where either side failed carries the failure
    (the numerator's first)."""
    out: list[Any] = []
    for a, b in zip(numerators, denominators, strict=True):
        if not ok(a):
            out.append(a if isinstance(a, Failed) else Failed("error"))
        elif not ok(b):
            out.append(b if isinstance(b, Failed) else Failed("error"))
        else:
            out.append(combine(float(a), float(b)))
    return out


def ratio_summary(numerators: Sequence[Any], denominators: Sequence[Any], digits: int = 3) -> dict:
    """The per-round ratios numerator ÷ denominator, summarised."""
    return summary(
        per_round(numerators, denominators, lambda a, b: a / b if b else math.nan), digits
    )


def difference_summary(
    minuends: Sequence[Any], subtrahends: Sequence[Any], digits: int = 3
) -> dict:
    """The per-round differences, summarised (start-up overheads in seconds)."""
    return summary(per_round(minuends, subtrahends, lambda a, b: a - b), digits)


def pick(values: Sequence[Any], key: str) -> list[Any]:
    """One field of each run's result dict (a failed run stays a Failed)."""
    return [v.get(key) if isinstance(v, dict) else v for v in values]


def fmt(s: dict, digits: int = 2, unit: str = "") -> str:
    """'0.99 [0.95, 1.04]' (n is shown only when some runs did not finish)."""
    if s.get("median") is None:
        if s.get("timeouts"):
            return f"> {s['timeout_s']:g} s timeout"
        return "failed" if s.get("errors") else "n/a"
    text = f"{s['median']:.{digits}f}{unit} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"
    missing = []
    if s.get("timeouts"):
        missing.append(f"{s['timeouts']} timed out")
    if s.get("errors"):
        missing.append(f"{s['errors']} failed")
    return text + (f" (n={s['n']}; {', '.join(missing)})" if missing else "")


def verdict(s: dict, target: float, *, at_most: bool = True) -> str:
    """PASS/FAIL of the median against the target (a timeout fails an at-most target)."""
    if s.get("median") is None:
        return "FAIL" if at_most and s.get("timeouts") else "n/a"
    passed = s["median"] <= target if at_most else s["median"] >= target
    return "PASS" if passed else "FAIL"


def target_text(target: float, *, at_most: bool = True, unit: str = "") -> str:
    return f"{'≤' if at_most else '≥'} {target:g}{unit}"


def print_rows(rows: list[tuple[str, str, str, str]], out=None) -> None:
    """An aligned table of (what, result, target, verdict)."""
    out = out or sys.stdout
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip(), file=out)
    out.flush()


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
