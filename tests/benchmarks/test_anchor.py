"""``benchmarks/anchor_purejaxrl.py``: the same settings on both sides; the fallback run (slow)."""

import json

import pytest

from benchmarks import anchor_purejaxrl as anchor


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
    doc = anchor.main(["--rounds", "1", "--single-steps", "11000", "--seed-steps", "11000", "--seeds", "1",
                       "--out", str(tmp_path)])
    assert doc["anchor"] == "reference_dqn" and doc["edits"] == []
    on_disk = json.loads((tmp_path / "anchor_purejaxrl.json").read_text())
    assert on_disk["summary"]["vmap"]["ratio"] > 0
