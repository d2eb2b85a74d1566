"""``benchmarks/anchor_purejaxrl.py``: the same settings on both sides; the fallback run (slow)."""

import pytest

from benchmarks import anchor_purejaxrl as anchor
from tests.benchmarks.schema import check_results


def test_both_sides_get_purejaxrl_settings():
    cfg = anchor.our_config(100_000)
    pj = anchor.purejaxrl_config(100_000)
    assert (cfg.num_envs, cfg.buffer_size, cfg.batch_size) == (pj["NUM_ENVS"], pj["BUFFER_SIZE"], pj["BUFFER_BATCH_SIZE"])
    assert (cfg.learning_starts, cfg.train_every, cfg.target_update_every) == (
        pj["LEARNING_STARTS"], pj["TRAINING_INTERVAL"], pj["TARGET_UPDATE_INTERVAL"])
    assert cfg.decay_steps == pj["EPSILON_ANNEAL_TIME"] and cfg.learning_rate == pj["LR"]
    assert cfg.hidden_sizes == (120, 84) and cfg.loss == "mse" and cfg.max_grad_norm is None


@pytest.mark.slow
def test_fallback_without_purejaxrl(tmp_path, monkeypatch):
    monkeypatch.delenv(anchor.ENV_VAR, raising=False)
    doc = anchor.main(["--rounds", "1", "--single-steps", "20000", "--seed-steps", "20000", "--seeds", "1",
                       "--out", str(tmp_path)])
    assert doc["config"]["anchor"] == "reference_dqn" and doc["config"]["edits"] == []
    d = check_results(tmp_path, "anchor_purejaxrl", mode="default", png=False, summary_keys=[
        f"{form}.{k}" for form in ("single", "vmap", "vmap_run") for k in ("ours_steps_per_s", "ratio")])
    assert d["summary"]["vmap"]["ratio"] > 0
    assert len(d["measurements"]) == 5  # 2 forms x 2 sides + vmap_run, one round
    assert set(d["curves"]["steps_per_s"]["series"]) == {"ours single", "reference_dqn single", "ours vmap",
                                                         "reference_dqn vmap", "ours vmap_run"}
