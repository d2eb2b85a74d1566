"""Random-action environment throughput: steps per second versus batch size.

Measures how many environment steps per second each dtrl-jax environment (``AccessPointSelection-v0``,
``MultiUAV-v0``, ``EdgeTaskScheduling-v0``) and, as the reference, gymnax's ``CartPole-v1`` run when
stepped with uniformly random actions inside one compiled program::

    jax.jit(jax.vmap(rollout))     # rollout: lax.scan over T steps of env.step for one environment

Every environment carries its own PRNG key, split every step into an action key and a step key, so
each environment gets fresh randomness every step. ``env.step`` is gymnax's auto-resetting step, so
episode ends are part of the measured work. The initial ``env.reset`` runs outside the timed call.
The last observation, reward, ``terminated`` and ``truncated`` are returned from the scan so XLA
cannot drop the observation or reward computation as dead code (the ``info`` dict is not kept).

For each environment and batch size the JSON records steps/s (best and median of the timed calls),
compile time and the ratio of the environment's steps/s to CartPole's at the same batch size; the
project target is a ratio of at least 0.5 (within 2x of CartPole) at every batch size on a 2-core
CPU. A log-log PNG of steps/s against batch size is written next to the JSON.

Usage::

    python -m benchmarks.env_throughput            # full batch list 1..65536, CPU, < 10 minutes
    python -m benchmarks.env_throughput --quick    # subset, < 2 minutes on 2 CPU cores
    python -m benchmarks.env_throughput --full --device gpu   # adds 2^18 and 2^20, more work per call

Outputs ``benchmarks/results/env_throughput.json`` and ``env_throughput.png`` (or under ``--out``). The JSON is in
the harness schema ``dtrl-bench/1``: ``summary[env]`` the ratios to CartPole by batch, peak steps/s and the
target check; panels ``steps_per_s``, ``steps_per_cpu_s`` and ``ratio_to_reference`` against the batch size;
``envs[env]["results"]`` every timed point.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import _common, harness

NAME = "env_throughput"

#: The reference environment (from gymnax) that the dtrl-jax environments are compared with.
REFERENCE_ENV = "CartPole-v1"

#: The dtrl-jax environments under test, built with ``dtrl_jax.make``.
DTRL_ENVS: tuple[str, ...] = ("AccessPointSelection-v0", "MultiUAV-v0", "EdgeTaskScheduling-v0")

#: Project target: each environment's steps/s at least this fraction of CartPole's at the same batch.
TARGET_MIN_RATIO = 0.5

#: Batch sizes of the default sweep.
DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)

#: Per-mode settings. The scan length T of each (environment, batch) point is chosen so that one
#: timed call takes about ``call_target_s``: ``T = rate * call_target_s / batch``, where ``rate`` is
#: the environment's steps/s measured at the previous (smaller) batch size (``initial_rate`` for
#: the first), rounded to a power of two and clipped to ``[min_t, max_t]``. ``repeats`` is the most
#: timed calls per point; ``budget_s`` stops repeating once the timed calls of a point took that long.
MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "batch_sizes": (1, 64, 1024, 16384),
        "call_target_s": 0.1,
        "initial_rate": 2e5,
        "min_t": 8,
        "max_t": 2048,
        "repeats": 5,
        "budget_s": 0.4,
    },
    "default": {
        "batch_sizes": DEFAULT_BATCH_SIZES,
        "call_target_s": 0.4,
        "initial_rate": 2e5,
        "min_t": 16,
        "max_t": 8192,
        "repeats": 9,
        "budget_s": 2.0,
    },
    "full": {
        "batch_sizes": DEFAULT_BATCH_SIZES + (2**18, 2**20),
        "call_target_s": 1.0,
        "initial_rate": 2e5,
        "min_t": 16,
        "max_t": 32768,
        "repeats": 10,
        "budget_s": 4.0,
    },
}


# --------------------------------------------------------------------------------------------------
# Environment construction and the measured program
# --------------------------------------------------------------------------------------------------


def make_env(env_id: str) -> tuple[Any, Any, str]:
    """Build ``env_id`` as ``(env, params, source)``.

    ``CartPole-v1`` (the reference) comes from ``gymnax.make``; every other id from ``dtrl_jax.make``.

    Raises:
      Exception: whatever the factory raises (e.g. an unknown id while the env is not written yet).
    """
    if env_id == REFERENCE_ENV:
        import gymnax

        env, params = gymnax.make(env_id)
        return env, params, "gymnax"
    import dtrl_jax

    env, params = dtrl_jax.make(env_id)
    return env, params, "dtrl_jax"


def build_rollout(env: Any, params: Any, num_steps: int) -> Callable[[Any, Any], Any]:
    """The batched random-action rollout ``(keys[B], states[B]) -> last transition``.

    For one environment, ``lax.scan`` runs ``num_steps`` steps of ``env.step`` with an action drawn
    from ``env.action_space(params)``; the PRNG key is split every step into (next key, action key,
    step key). The function returned is the ``jax.vmap`` of that over a leading batch axis; wrap it in
    ``jax.jit`` (``time_compiled`` does).

    Returns:
      ``batched(keys, states) -> (keys, states, obs, reward, terminated, truncated)`` at the end of
      the rollout, all with a leading batch axis.
    """

    def rollout(key: jax.Array, state: Any):
        def body(carry, _):
            key, state, _obs, _reward, _term, _trunc = carry
            key, k_act, k_step = jax.random.split(key, 3)
            action = env.action_space(params).sample(k_act)
            obs, state, reward, terminated, truncated, _info = env.step(k_step, state, action, params)
            return (key, state, obs, reward, terminated, truncated), None

        # The carry's (obs, reward, terminated, truncated) slots start as zeros of the step's output
        # structure (from eval_shape, so the step is traced, not compiled, a second time).
        out_shape = jax.eval_shape(lambda k, s: env.step(k, s, env.action_space(params).sample(k), params), key, state)
        obs, _, reward, terminated, truncated, _ = jax.tree_util.tree_map(
            lambda sd: jnp.zeros(sd.shape, sd.dtype), out_shape
        )
        carry = (key, state, obs, reward, terminated, truncated)
        carry, _ = jax.lax.scan(body, carry, None, length=num_steps)
        return carry

    return jax.vmap(rollout)


_RESET_FNS: dict[tuple[int, int], Callable[[jax.Array], Any]] = {}


def _batched_reset(env: Any, params: Any) -> Callable[[jax.Array], Any]:
    """``jax.jit(jax.vmap(reset))`` for ``(env, params)``, built once per pair (traced once per shape)."""
    cache_key = (id(env), id(params))
    if cache_key not in _RESET_FNS:
        _RESET_FNS[cache_key] = jax.jit(jax.vmap(lambda k: env.reset(k, params)[1]))
    return _RESET_FNS[cache_key]


def initial_states(env: Any, params: Any, batch_size: int, seed: int, device: jax.Device):
    """``(keys[B], states[B])``: per-environment rollout keys and reset states, on ``device``."""
    root = jax.random.PRNGKey(seed)
    reset_root, roll_root = jax.random.split(root)
    reset_keys = jax.random.split(reset_root, batch_size)
    roll_keys = jax.random.split(roll_root, batch_size)
    states = _batched_reset(env, params)(jax.device_put(reset_keys, device))
    return jax.device_put(roll_keys, device), jax.device_put(states, device)


def steps_for_batch(batch_size: int, rate: float, call_target_s: float, min_t: int, max_t: int) -> int:
    """Scan length T so that ``batch_size * T`` steps at ``rate`` steps/s take ``call_target_s``.

    Rounded to a power of two and clipped to ``[min_t, max_t]``.
    """
    raw = max(1.0, rate * call_target_s / batch_size)
    t = 1 << int(round(math.log2(raw)))
    return int(min(max(t, min_t), max_t))


def _all_finite_numbers(tree: Any) -> bool:
    """Whether every floating leaf of ``tree`` is finite (a sanity check of the last transition)."""
    ok = True
    for leaf in jax.tree_util.tree_leaves(tree):
        arr = jnp.asarray(leaf)
        if jnp.issubdtype(arr.dtype, jnp.floating):
            ok = ok and bool(jnp.all(jnp.isfinite(arr)))
    return ok


def measure(
    env: Any,
    params: Any,
    batch_size: int,
    num_steps: int,
    *,
    repeats: int,
    budget_s: float | None,
    device: jax.Device,
    seed: int = 0,
) -> dict[str, Any]:
    """Compile and time one (environment, batch size) point.

    Returns:
      A dict with ``batch_size``, ``num_steps`` (T), ``steps_per_call`` (B*T), ``compile_s``
      (lowering + XLA compilation), ``lower_s``, ``xla_compile_s``, ``first_run_s``, ``best_s``,
      ``median_s``, ``best_cpu_s``, ``median_cpu_s``, ``repeats`` (timed calls made),
      ``steps_per_s`` (from ``best_s``, the headline figure), ``steps_per_s_median`` (from
      ``median_s``), ``steps_per_cpu_s`` (steps per CPU-second of this process, from ``best_cpu_s``;
      steadier than wall time on a busy machine, see :class:`benchmarks._common.Timing`) and
      ``finite`` (all float outputs of the last step finite).
    """
    keys, states = initial_states(env, params, batch_size, seed, device)
    fn = build_rollout(env, params, num_steps)
    timing = _common.time_compiled(fn, keys, states, repeats=repeats, budget_s=budget_s)
    finite = _all_finite_numbers(timing.output[2:4])  # last obs and reward
    steps = batch_size * num_steps
    return {
        "batch_size": batch_size,
        "num_steps": num_steps,
        "steps_per_call": steps,
        "compile_s": timing.trace_and_compile_s,
        "lower_s": timing.lower_s,
        "xla_compile_s": timing.compile_s,
        "first_run_s": timing.first_run_s,
        "best_s": timing.best_s,
        "median_s": timing.median_s,
        "best_cpu_s": timing.best_cpu_s,
        "median_cpu_s": timing.median_cpu_s,
        "repeats": len(timing.times_s),
        "steps_per_s": steps / timing.best_s,
        "steps_per_s_median": steps / timing.median_s,
        "steps_per_cpu_s": steps / timing.best_cpu_s if timing.best_cpu_s > 0 else None,
        "finite": finite,
    }


# --------------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------------


def run_sweep(
    env_ids: Sequence[str],
    batch_sizes: Sequence[int],
    *,
    call_target_s: float,
    initial_rate: float,
    min_t: int,
    max_t: int,
    repeats: int,
    budget_s: float | None,
    device: jax.Device,
    fixed_t: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure every environment at every batch size, printing progress.

    The scan length T of a point is :func:`steps_for_batch` of the environment's steps/s at the
    previous batch size (``initial_rate`` at the first), unless ``fixed_t`` is given.

    The loop runs batch sizes in the outer loop and environments in the inner one, so that the
    measurements compared in a ratio (same batch, different environments) are taken close together
    in time and share whatever background load the machine has.

    An environment that cannot be built (e.g. not registered yet) is recorded with ``status:
    "unavailable"``; one that fails while compiling or running with ``status: "error"`` (and is not
    measured at larger batch sizes); both keep the error message and the sweep goes on.

    Returns:
      ``{env_id: {"source", "status", "error", "results": [measure(...) dicts]}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    built: dict[str, tuple[Any, Any]] = {}
    for env_id in env_ids:
        entry: dict[str, Any] = {"source": None, "status": "ok", "error": None, "results": []}
        out[env_id] = entry
        try:
            env, params, source = make_env(env_id)
        except Exception as exc:  # noqa: BLE001 - recorded, not hidden
            entry.update(status="unavailable", error=f"{type(exc).__name__}: {exc}")
            _common.log(f"[{env_id}] unavailable: {entry['error']}")
            continue
        entry["source"] = source
        built[env_id] = (env, params)

    for batch in batch_sizes:
        for env_id, (env, params) in built.items():
            entry = out[env_id]
            if entry["status"] != "ok":
                continue
            if fixed_t is not None:
                t = fixed_t
            else:
                rate = entry["results"][-1]["steps_per_s"] if entry["results"] else initial_rate
                t = steps_for_batch(batch, rate, call_target_s, min_t, max_t)
            start = time.perf_counter()
            try:
                with jax.default_device(device):
                    res = measure(env, params, batch, t, repeats=repeats, budget_s=budget_s, device=device)
            except Exception as exc:  # noqa: BLE001 - recorded, not hidden
                entry.update(status="error", error=f"batch {batch}: {type(exc).__name__}: {exc}")
                _common.log(f"[{env_id}] batch {batch}: FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc(file=sys.stderr)
                continue
            entry["results"].append(res)
            _common.log(
                f"batch {batch:>7} x T {t:>5}  {env_id:<24} {_common.format_rate(res['steps_per_s']):>7} steps/s"
                f"  (compile {res['compile_s']:.2f}s, best {res['best_s'] * 1e3:.1f} ms of {res['repeats']},"
                f" point {time.perf_counter() - start:.1f}s)"
            )
    return out


def add_ratios(envs: dict[str, dict[str, Any]], reference: str = REFERENCE_ENV) -> dict[str, Any]:
    """Add ratios to the reference to every result and build a per-environment summary.

    ``ratio_to_reference`` is the environment's ``steps_per_s`` divided by the reference's at the
    same batch size (best wall-clock call for both): the project's target metric; ``meets_target``
    is ``ratio_to_reference >= TARGET_MIN_RATIO``. ``ratio_to_reference_cpu`` is the same ratio of
    steps per CPU-second, a cross-check that is far less sensitive to other processes sharing the
    cores.

    Returns:
      ``{env_id: {"status", "ratio_by_batch": {batch: ratio}, "ratio_cpu_by_batch", "min_ratio",
      "min_ratio_batch", "meets_target_all", "batches_missing_target", "peak_steps_per_s",
      "peak_batch"}}`` (ratio keys only when the reference was measured).
    """
    ref_results = envs.get(reference, {}).get("results", [])
    ref = {r["batch_size"]: r["steps_per_s"] for r in ref_results}
    ref_cpu = {r["batch_size"]: r.get("steps_per_cpu_s") for r in ref_results}
    summary: dict[str, Any] = {}
    for env_id, entry in envs.items():
        ratios: dict[str, float] = {}
        ratios_cpu: dict[str, float] = {}
        for res in entry["results"]:
            b = res["batch_size"]
            ratio = res["steps_per_s"] / ref[b] if ref.get(b) else None
            cpu_rate = res.get("steps_per_cpu_s")
            ratio_cpu = cpu_rate / ref_cpu[b] if (cpu_rate and ref_cpu.get(b)) else None
            res["ratio_to_reference"] = ratio
            res["ratio_to_reference_cpu"] = ratio_cpu
            res["meets_target"] = None if ratio is None else bool(ratio >= TARGET_MIN_RATIO)
            if ratio is not None:
                ratios[str(b)] = ratio
            if ratio_cpu is not None:
                ratios_cpu[str(b)] = ratio_cpu
        if not entry["results"]:
            summary[env_id] = {"status": entry["status"]}
            continue
        peak = max(entry["results"], key=lambda r: r["steps_per_s"])
        item: dict[str, Any] = {
            "status": entry["status"],
            "ratio_by_batch": ratios,
            "ratio_cpu_by_batch": ratios_cpu,
            "peak_steps_per_s": peak["steps_per_s"],
            "peak_batch": peak["batch_size"],
        }
        if ratios:
            worst = min(ratios, key=ratios.get)
            item.update(
                min_ratio=ratios[worst],
                min_ratio_batch=int(worst),
                meets_target_all=all(r >= TARGET_MIN_RATIO for r in ratios.values()),
                batches_missing_target=[int(k) for k, r in ratios.items() if r < TARGET_MIN_RATIO],
            )
        if ratios_cpu:
            item["meets_target_all_cpu"] = all(r >= TARGET_MIN_RATIO for r in ratios_cpu.values())
        summary[env_id] = item
    return summary


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------


def format_results_table(envs: dict[str, dict[str, Any]], batch_sizes: Sequence[int], cpu: bool = True) -> str:
    """Compact text tables: steps/s per environment and batch size, then the ratios to CartPole.

    With ``cpu`` the steps per CPU-second and their ratios are shown too (the cross-check that
    background load on the machine hardly affects).
    """

    def rate_rows(key: str) -> list[list[str]]:
        rows = []
        for env_id, entry in envs.items():
            by_batch = {r["batch_size"]: r for r in entry["results"]}
            rows.append([env_id] + [_common.format_rate(by_batch[b].get(key)) if b in by_batch else "-" for b in batch_sizes])
        return rows

    def ratio_rows(key: str) -> list[list[str]]:
        rows = []
        for env_id, entry in envs.items():
            if env_id == REFERENCE_ENV:
                continue
            by_batch = {r["batch_size"]: r for r in entry["results"]}
            cells = []
            for b in batch_sizes:
                r = by_batch.get(b, {}).get(key)
                cells.append("-" if r is None else f"{r:.2f}{'' if r >= TARGET_MIN_RATIO else '*'}")
            rows.append([env_id] + cells)
        return rows

    header = [str(b) for b in batch_sizes]
    text = _common.format_table(["steps/s (wall)"] + header, rate_rows("steps_per_s"))
    if cpu:
        text += "\n\n" + _common.format_table(["steps per CPU-second"] + header, rate_rows("steps_per_cpu_s"))
    if any(e for e in envs if e != REFERENCE_ENV):
        text += "\n\n" + _common.format_table(["ratio to CartPole (wall)"] + header, ratio_rows("ratio_to_reference"))
        if cpu:
            text += "\n\n" + _common.format_table(
                ["ratio to CartPole (CPU time)"] + header, ratio_rows("ratio_to_reference_cpu")
            )
        text += f"\n(* below the {TARGET_MIN_RATIO:g} target, i.e. more than {1 / TARGET_MIN_RATIO:g}x slower than CartPole)"
    return text


def plot(envs: dict[str, dict[str, Any]], title: str, path: Path) -> Path:
    """Log-log PNG of steps/s against batch size, one line per environment, plus the 2x target floor.

    Left panel: wall-clock steps/s (the target metric). Right panel: steps per CPU-second of the
    benchmark process, the same measurement with time spent waiting for a core (other processes on a
    busy machine) left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.8), dpi=110, sharey=True)
    batches = sorted({r["batch_size"] for e in envs.values() for r in e["results"]})
    panels = (
        ("steps_per_s", "wall clock", "environment steps per second (random actions)"),
        ("steps_per_cpu_s", "per CPU-second of the benchmark process", "environment steps per CPU-second"),
    )
    for ax, (key, subtitle, ylabel) in zip(axes, panels):
        for env_id, entry in envs.items():
            res = [r for r in entry["results"] if r.get(key)]
            if not res:
                continue
            style = dict(color="black", linewidth=2.2, marker="s") if env_id == REFERENCE_ENV else dict(marker="o")
            label = f"{env_id} (gymnax, reference)" if env_id == REFERENCE_ENV else env_id
            ax.plot([r["batch_size"] for r in res], [r[key] for r in res], label=label, **style)
        ref = [r for r in envs.get(REFERENCE_ENV, {}).get("results", []) if r.get(key)]
        if ref:
            ax.plot(
                [r["batch_size"] for r in ref],
                [r[key] * TARGET_MIN_RATIO for r in ref],
                color="gray",
                linestyle="--",
                linewidth=1,
                label=f"target floor: CartPole / {1 / TARGET_MIN_RATIO:g}",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        if batches:
            ax.set_xticks(batches)
            ax.set_xticklabels([f"{b // 1024}k" if b >= 4096 and b % 1024 == 0 else str(b) for b in batches])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("batch size (parallel environments)")
        ax.set_ylabel(ylabel)
        ax.yaxis.set_tick_params(labelleft=True)
        ax.set_title(subtitle, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def curve_panels(envs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Schema panels against the batch size, one series per environment: steps/s (wall and CPU), ratio."""
    rows = [{"env": env_id, **r} for env_id, e in envs.items() if e["status"] == "ok" for r in e["results"]]
    return {y: harness.points_panel(rows, x="batch_size", y=y, series_of=lambda r: r["env"], xlabel="parallel environments",
                                    ylabel=label)
            for y, label in (("steps_per_s", "environment steps/s (best timed call)"),
                             ("steps_per_cpu_s", "environment steps per CPU second"),
                             ("ratio_to_reference", f"steps/s over {REFERENCE_ENV}'s at the same batch"))}


def _busy_machine_note(
    load_start: list[float] | None, load_end: list[float] | None, cpu_share: float | None
) -> str | None:
    """A warning when other processes competed for the CPU during the sweep, else ``None``.

    Signs: a 1-minute load average above the usable CPU count (this process itself adds about 1), or
    this process getting well under one core on average while it ran (``cpu_share``).
    """
    cpus = _common.environment_info()["usable_cpus"] or 1
    loads = [l[0] for l in (load_start, load_end) if l]
    reasons = []
    if loads and max(loads) > cpus + 0.5:
        reasons.append(f"1-minute load average up to {max(loads):.1f} on {cpus} usable CPUs")
    if cpu_share is not None and cpu_share < 0.75:
        reasons.append(f"this process got {cpu_share:.2f} CPU-seconds per second")
    if not reasons:
        return None
    return (
        "the machine was busy (" + "; ".join(reasons) + "): wall-clock steps/s are lower and noisier than "
        "on an idle machine; compare the CPU-time ratios (ratio_to_reference_cpu)"
    )



def build_parser() -> argparse.ArgumentParser:
    """Command-line parser: the shared flags plus overrides used by tests and for custom sweeps."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.env_throughput",
        description="Random-action steps/s of the dtrl-jax environments and gymnax CartPole-v1 vs batch size.",
    )
    _common.add_common_args(parser)
    parser.add_argument("--batch-sizes", type=_common.int_list, default=None, help="override the batch sizes, e.g. 1,64,1024")
    parser.add_argument("--steps", type=int, default=None, help="fixed scan length T for every batch (default: per batch)")
    parser.add_argument("--repeats", type=int, default=None, help="most timed calls per point")
    parser.add_argument(
        "--envs",
        default=None,
        help=f"comma-separated env ids (default: {REFERENCE_ENV} and all of {', '.join(DTRL_ENVS)})",
    )
    parser.add_argument(
        "--prng-impl",
        default=None,
        choices=("threefry2x32", "rbg", "unsafe_rbg"),
        help="JAX PRNG implementation (sets jax_default_prng_impl; default: JAX's default, threefry2x32)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 if any environment is unavailable or fails (missing the speed target never fails)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``env_throughput.json`` (and ``.png``) and print a table.

    Args:
      argv: command-line arguments (``None``: ``sys.argv[1:]``).

    Returns:
      The JSON document written (as a dict), with the path(s) under ``"files"``.
    """
    args = build_parser().parse_args(argv)
    mode = _common.run_mode(args)
    cfg = dict(MODES[mode])
    if args.batch_sizes is not None:
        cfg["batch_sizes"] = tuple(args.batch_sizes)
    if args.repeats is not None:
        if args.repeats < 1:
            raise SystemExit("--repeats must be >= 1")
        cfg["repeats"] = args.repeats
    if args.steps is not None and args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    env_ids = [REFERENCE_ENV, *DTRL_ENVS] if args.envs is None else [e.strip() for e in args.envs.split(",") if e.strip()]
    if REFERENCE_ENV in env_ids:  # measure the reference first
        env_ids = [REFERENCE_ENV] + [e for e in env_ids if e != REFERENCE_ENV]

    if args.prng_impl is not None:
        jax.config.update("jax_default_prng_impl", args.prng_impl)
    device = _common.select_device(args.device)
    device_name = _common.describe_device(device)
    batch_sizes = list(cfg["batch_sizes"])
    _common.log(
        f"env_throughput: mode={mode}, device={device_name}, envs={env_ids}, batch sizes={batch_sizes}, "
        f"~{cfg['call_target_s']}s per timed call"
    )
    try:
        import dtrl_jax

        registered = sorted(dtrl_jax.registered_envs())
    except Exception as exc:  # noqa: BLE001 - a module may be mid-edit; the sweep records per-env errors
        registered = []
        _common.log(f"warning: import dtrl_jax failed: {type(exc).__name__}: {exc}")

    load_start = _common.load_average()
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    envs = run_sweep(
        env_ids,
        batch_sizes,
        call_target_s=cfg["call_target_s"],
        initial_rate=cfg["initial_rate"],
        min_t=cfg["min_t"],
        max_t=cfg["max_t"],
        repeats=cfg["repeats"],
        budget_s=cfg["budget_s"],
        device=device,
        fixed_t=args.steps,
    )
    summary = add_ratios(envs)
    wall = time.perf_counter() - wall0
    cpu_share = (time.process_time() - cpu0) / wall if wall > 0 else None
    load_end = _common.load_average()
    busy_note = _busy_machine_note(load_start, load_end, cpu_share)

    config: dict[str, Any] = {
        "description": (
            "Random-action environment steps per second under jax.jit(jax.vmap(lax.scan over T steps of "
            "env.step)), one PRNG key per environment split every step; reset outside the timed call; "
            "steps_per_s = batch_size * T / best wall time of the timed calls; steps_per_cpu_s uses the "
            "best CPU time (process_time) of the calls instead, a cross-check when other processes "
            "share the cores (see config.busy_machine)."
        ),
        "device": args.device,
        "device_description": device_name,
        "batch_sizes": batch_sizes,
        "call_target_s": cfg["call_target_s"],
        "initial_rate": cfg["initial_rate"],
        "min_t": cfg["min_t"],
        "max_t": cfg["max_t"],
        "fixed_t": args.steps,
        "repeats": cfg["repeats"],
        "budget_s": cfg["budget_s"],
        "env_ids": env_ids,
        "registered_dtrl_envs": registered,
        "prng_impl": str(jax.config.jax_default_prng_impl),
        "load_average_at_start": load_start,
        "load_average_at_end": load_end,
        "process_cpu_share": cpu_share,
        "busy_machine": busy_note is not None,
        "busy_machine_note": busy_note,
        "reference_env": REFERENCE_ENV,
        "target": {
            "min_ratio_to_reference": TARGET_MIN_RATIO,
            "description": (
                "each environment within 2x of gymnax CartPole-v1's steps/s at the same batch size on a "
                "2-core CPU (about 9M steps/s at 1,024 environments)"
            ),
        },
        "wall_time_s": wall,
    }
    curves = curve_panels(envs)
    out_dir = _common.results_dir(args.out)
    files = {}
    plot_fn = None
    if not args.no_plot:
        title = f"Env throughput, random actions — {device_name}"
        if busy_note:
            title += f"\n(busy machine: load {load_start[0] if load_start else '?'}, wall-clock numbers are noisy)"
        files["png"] = str(out_dir / f"{NAME}.png")
        plot_fn = lambda png: plot(envs, title, png)
    files["json"] = str(out_dir / f"{NAME}.json")
    config["files"] = {k: Path(v).name for k, v in files.items()}
    # the measurement rows stay beside the schema's parts (every timed point, for the tables)
    json_path = harness.write(NAME, mode=mode, config=config, summary=summary, curves=curves, out=args.out,
                              plot=plot_fn, extra={"envs": envs})
    payload = {"config": config, "summary": summary, "curves": curves, "envs": envs}

    print()
    print(f"Environment steps/s ({device_name}, mode {mode}, {wall:.0f}s total)")
    print(format_results_table(envs, batch_sizes))
    if busy_note:
        print(f"warning: {busy_note}")
    for env_id, entry in envs.items():
        if entry["status"] != "ok":
            print(f"{env_id}: {entry['status']}: {entry['error']}")
    print(f"\nwrote {json_path}" + (f" and {files['png']}" if "png" in files else ""))

    if args.strict and any(e["status"] != "ok" for e in envs.values()):
        raise SystemExit(1)
    result = dict(payload)
    result["files"] = files
    return result


if __name__ == "__main__":
    main()
