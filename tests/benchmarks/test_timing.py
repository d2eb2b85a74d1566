"""Smoke tests of the small timing benchmarks (start-up, GIF rendering): the results schema, no speed asserted."""

from benchmarks import render_gif, startup
from tests.benchmarks.schema import check_results


def test_startup_smoke(tmp_path):
    startup.main(["--repeats", "1", "--out", str(tmp_path)])
    d = check_results(tmp_path, "startup", mode="default", png=False,
                      summary_keys=[f"this.{c}.{k}" for c in ("--help", "envs", "plot", "train --help")
                                    for k in ("median_s", "min_s", "max_s", "imports_jax")])
    # the light commands must not import JAX; train --help needs the configs (JAX)
    assert d["summary"]["this"]["--help"]["imports_jax"] is False
    assert d["summary"]["this"]["train --help"]["imports_jax"] is True
    assert len(d["curves"]["wall_s"]["series"]) == 4


def test_render_gif_smoke(tmp_path):
    render_gif.main(["--steps", "4", "--every", "2", "--out", str(tmp_path)])
    d = check_results(tmp_path, "render_gif", mode="default", png=False, summary_keys=["seconds.blitted",
                                                                                        "seconds.redraw_every_frame",
                                                                                        "speedup"])
    assert d["config"]["frames"] == 3 and d["summary"]["speedup"] > 0
