"""The benchmarks' own machinery: interleaving, summaries, child processes and timeouts
(benchmarks/stats.py), bench_scale's data builder and timeout rule, bench_train's fixed order."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import bench_scale, bench_train, stats

ROOT = Path(__file__).resolve().parents[1]


# --- interleaving ----------------------------------------------------------------------------------


def test_two_series_alternate_which_goes_first():
    assert stats.schedule(["a", "b"], 4) == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]


def test_more_series_run_forwards_then_backwards():
    assert stats.schedule(["anchor", "100", "1000"], 3) == [
        ["anchor", "100", "1000"],
        ["1000", "100", "anchor"],
        ["anchor", "100", "1000"],
    ]


def test_interleave_runs_in_schedule_order_and_keeps_rounds_aligned():
    calls = []

    def runner(label):
        def run(r):
            calls.append((r, label))
            if (r, label) == (1, "b"):
                raise stats.RunFailed(stats.Failed("timeout", 5.0))
            return f"{label}{r}"

        return run

    results = stats.interleave(3, {"a": runner("a"), "b": runner("b")})
    assert calls == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]
    assert results["a"] == ["a0", "a1", "a2"]
    assert results["b"][0] == "b0" and results["b"][2] == "b2"
    assert results["b"][1] == stats.Failed("timeout", 5.0)


def test_interleave_records_skips_without_running():
    ran = []
    skipped = stats.Failed("timeout", 9.0, "skipped")
    results = stats.interleave(
        2,
        {"a": lambda r: ran.append(("a", r)) or 1, "b": lambda r: ran.append(("b", r)) or 2},
        skip=lambda label, so_far: skipped if label == "b" else None,
    )
    assert ran == [("a", 0), ("a", 1)]
    assert results == {"a": [1, 1], "b": [skipped, skipped]}


# --- summaries ----------------------------------------------------------------------------------


def test_summary_is_median_min_max_n():
    assert stats.summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert stats.summary([1, 2, 3, 10]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}


def test_summary_counts_runs_that_did_not_finish():
    values = [1.0, stats.Failed("timeout", 120.0), stats.Failed("error", detail="x"), None, 3.0]
    assert stats.summary(values) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "n": 2,
        "timeouts": 1,
        "timeout_s": 120.0,
        "errors": 2,
    }
    nothing = stats.summary([stats.Failed("timeout", 60.0)])
    assert nothing["median"] is None and nothing["n"] == 0 and nothing["timeouts"] == 1


def test_ratios_are_taken_per_round_then_summarised():
    # rounds: 2/1, 4/2, 9/3 -> 2, 2, 3 (not the ratio of the medians, 4/2)
    assert stats.ratio_summary([2, 4, 9], [1, 2, 3]) == {
        "median": 2.0,
        "min": 2.0,
        "max": 3.0,
        "n": 3,
    }
    # a round where either side failed is left out and counted
    s = stats.ratio_summary([2, stats.Failed("timeout", 5.0), 6], [1, 1, stats.Failed("error")])
    assert (s["median"], s["n"], s["timeouts"], s["errors"]) == (2.0, 1, 1, 1)


def test_differences_are_taken_per_round():
    s = stats.difference_summary([0.30, 0.25, 0.40], [0.05, 0.05, 0.10])
    assert s == {"median": 0.25, "min": 0.2, "max": 0.3, "n": 3}


def test_fmt_and_verdict():
    s = {"median": 0.99, "min": 0.95, "max": 1.04, "n": 5}
    assert stats.fmt(s) == "0.99 [0.95, 1.04]"
    assert stats.verdict(s, 0.97, at_most=False) == "PASS"
    assert stats.verdict(s, 0.9) == "FAIL"
    timed_out = stats.summary([stats.Failed("timeout", 120.0)] * 3)
    assert stats.fmt(timed_out) == "> 120 s timeout"
    assert stats.verdict(timed_out, 1.5) == "FAIL"
    partly = stats.summary([1.0, 2.0, stats.Failed("timeout", 120.0)])
    assert stats.fmt(partly) == "1.50 [1.00, 2.00] (n=2; 1 timed out)"


# --- child processes ------------------------------------------------------------------------------


CHILD = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {root!r})
    from benchmarks import stats

    assert sys.argv[1] == "--child"
    kind = sys.argv[2]
    print("noise a library printed")
    if kind == "ok":
        stats.emit({{"value": json.loads(sys.argv[3])["x"] * 2}})
    elif kind == "fail":
        print("boom", file=sys.stderr)
        sys.exit(3)
    elif kind == "slow":
        stats.emit({{"open_s": 0.5}})
        time.sleep(60)
        stats.emit({{"open_s": 0.5, "exit_s": 60}})
    """
)


@pytest.fixture
def child_script(tmp_path):
    script = tmp_path / "scripts" / "child.py"
    script.parent.mkdir()
    script.write_text(CHILD.format(root=str(ROOT)))
    return script


def test_run_child_returns_the_result_line(child_script):
    assert stats.run_child(child_script, ["ok", json.dumps({"x": 21})], timeout=30) == {"value": 42}


def test_run_child_failure_carries_stderr(child_script):
    with pytest.raises(stats.RunFailed) as caught:
        stats.run_child(child_script, ["fail"], timeout=30)
    assert caught.value.failure.reason == "error"
    assert "exit 3" in caught.value.failure.detail and "boom" in caught.value.failure.detail


def test_run_child_timeout_kills_it_and_keeps_what_it_emitted(child_script):
    with pytest.raises(stats.RunFailed) as caught:
        stats.run_child(child_script, ["slow"], timeout=2)
    failure = caught.value.failure
    assert failure.reason == "timeout" and failure.timeout == 2
    assert failure.partial == {"open_s": 0.5}
    assert str(failure) == "> 2 s (timeout)"


def test_time_command_times_a_whole_process():
    seconds = stats.time_command([sys.executable, "-c", "import time; time.sleep(0.2)"], timeout=30)
    assert 0.2 <= seconds < 10
    with pytest.raises(stats.RunFailed):
        stats.time_command([sys.executable, "-c", "raise SystemExit(1)"], timeout=30)


# --- bench_scale --------------------------------------------------------------------------------


def test_build_home_makes_a_session_the_store_reads_back_in_order(tmp_path):
    from sessions.models import Role
    from sessions.store import Store

    info = bench_scale.build_home(tmp_path / "home", 25)
    store = Store(tmp_path / "home" / "cosplay.db")
    try:
        branch = store.branch(info["session_id"])
        assert len(branch) == 25
        assert branch[-1].id == info["last_id"]
        assert [m.role for m in branch] == [Role.USER, Role.ASSISTANT] * 12 + [Role.USER]
        assert all(b.parent_id == a.id for a, b in zip(branch, branch[1:], strict=False))
        assert branch[0].parent_id is None
        assert all(100 <= len(m.content) <= 400 for m in branch)
        assert any(re.search(r"[\u4e00-\u9fff]", m.content) for m in branch)
        assert any(re.search(r"[A-Za-z]{4}", m.content) for m in branch)
        assert len(store.list_sessions()) == 1
    finally:
        store.close()


def test_a_size_that_timed_out_is_skipped_with_every_larger_one():
    skip = bench_scale.skip_after_timeout([100, 1000, 5000])
    timeout = stats.Failed("timeout", 120.0)
    results = {"anchor": [1.0], "100": [1.0], "1000": [timeout], "5000": [timeout]}
    assert skip("anchor", results) is None
    assert skip("100", results) is None
    assert skip("1000", results).reason == "timeout"
    assert skip("5000", {**results, "5000": []}).reason == "timeout"


def test_a_timed_out_open_still_counts_its_open_time():
    partial = stats.Failed("timeout", 60.0, partial={"open_s": 2.0})
    values = bench_scale.timed_out_partial([{"open_s": 1.0, "exit_s": 0.1}, partial], "open_s")
    assert stats.pick(values, "open_s") == [1.0, 2.0]
    assert stats.pick(bench_scale.timed_out_partial([partial], "exit_s"), "exit_s") == [partial]


# --- bench_train ----------------------------------------------------------------------------------


def test_fixed_order_is_a_permutation_that_depends_on_seed_and_epoch_only():
    first = bench_train.fixed_order(20, seed=0, epoch=0)
    assert sorted(first) == list(range(20))
    assert bench_train.fixed_order(20, seed=0, epoch=0) == first
    assert bench_train.fixed_order(20, seed=0, epoch=1) != first


def test_batch_facts_count_tokens_and_padding_of_the_timed_steps():
    lengths = [10, 2, 4, 4, 8, 8]
    seen = [0, 1, 2, 3, 4, 5, 0, 1]  # batches of 2: (0,1) (2,3) (4,5) (0,1)
    facts = bench_train.batch_facts(seen, lengths, batch=2, first=1, last=3)
    # steps 2 and 3: (2,3) and (4,5): 24 tokens, 8 + 16 positions, nothing padded
    assert facts["tokens"] == 24 and facts["padded_share"] == 0
    facts = bench_train.batch_facts(seen, lengths, batch=2, first=0, last=1)
    assert facts["tokens"] == 12 and facts["padded_share"] == pytest.approx(1 - 12 / 20)


# --- one real run, small --------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_scale_runs_end_to_end(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_scale.py"),
            "--sizes",
            "30",
            "--n",
            "1",
            "--only",
            "open,cli",
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for what in ("TUI open", "TUI exit", "cosplay sessions list", "cosplay sessions show"):
        cell = result["ratios_to_anchor"][what]["30"]
        assert cell["n"] == 1 and cell["median"] > 0, (what, cell)
