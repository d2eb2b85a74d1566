"""A CLI training run killed mid-way (SIGKILL: a crash; SIGTERM: a scheduler's notice) resumes exactly.

Guards item 4 of the reliability issue: after ``dtrl train --resume`` no completed logging interval is
lost or repeated, and the metrics equal an uninterrupted run with the same seed, bit for bit.
Real subprocesses and real signals; the run is tabular Q-learning on AccessPointSelection-v0 so
each process compiles in seconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dtrl_jax.experiment import runs

ROOT = Path(__file__).resolve().parents[2]
STEPS, LOG_EVERY = 60_000, 2_000  # 30 intervals, one checkpoint each: the kill lands mid-run
ARGS = ["train", "AccessPointSelection-v0", "--agent", "ql", "--total-timesteps", str(STEPS),
        "--log-every", str(LOG_EVERY), "--checkpoint-every", str(LOG_EVERY), "--epsilon-decay-steps", "20000",
        "--seed", "7", "--no-progress"]
INTERVALS = STEPS // LOG_EVERY


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "dtrl_jax.experiment.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _kill_after_checkpoints(run_dir: Path, sig, at_least: int = 2, timeout: float = 240.0):
    """Start a run, wait until ``at_least`` checkpoints exist, then send ``sig``."""
    proc = _cli(*ARGS, "--out", str(run_dir))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        done = [i for i, _ in runs.list_checkpoints(run_dir)] if (run_dir / "checkpoints").exists() else []
        if done and max(done) >= at_least:
            proc.send_signal(sig)
            break
        time.sleep(0.005)
    code, _, err = _finish(proc)
    return code, err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    code, _, err = _finish(_cli(*ARGS, "--out", str(run_dir)))
    assert code == 0, err
    return runs.read_metrics(run_dir)


def _assert_resumes_exactly(run_dir: Path, reference):
    done = max(i for i, _ in runs.list_checkpoints(run_dir))
    assert 0 < done < INTERVALS, f"the signal must land mid-run (checkpoint {done} of {INTERVALS})"
    code, _, err = _finish(_cli("train", "--resume", str(run_dir), "--no-progress"))
    assert code == 0, err
    resumed = runs.read_metrics(run_dir)
    steps = resumed["physical_steps"][0]
    # every interval exactly once, in order
    np.testing.assert_array_equal(steps, LOG_EVERY * np.arange(1, INTERVALS + 1))
    for name, values in reference.items():
        np.testing.assert_array_equal(resumed[name], values, err_msg=name)
    return done


def test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    run_dir = tmp_path / "killed"
    code, _ = _kill_after_checkpoints(run_dir, signal.SIGKILL)
    assert code == -signal.SIGKILL
    _assert_resumes_exactly(run_dir, uninterrupted)


def test_sigterm_stops_at_the_next_checkpoint_and_resumes_exactly(tmp_path, uninterrupted):
    run_dir = tmp_path / "terminated"
    code, err = _kill_after_checkpoints(run_dir, signal.SIGTERM)
    assert code == 130, err
    assert "SIGTERM: stopping after the next checkpoint" in err and "--resume" in err
    _assert_resumes_exactly(run_dir, uninterrupted)
