"""Play back a saved agent: greedy returns (``dtrl eval``) and pictures of a UAV episode.

``load_agent(run_dir)`` rebuilds the environment and agent of a run folder from its
``config.json`` and restores the physical agent's parameters from the newest good checkpoint.
``greedy_returns`` plays E greedy episodes per seed on the *physical* environment (one ``vmap``
over seeds x episodes); ``uav_episode`` records one greedy ``MultiUAV`` episode and
``draw_uav_episode`` / ``animate_uav_episode`` turn it into a PNG / GIF.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dtrl_jax.agents.exploration import greedy_action
from dtrl_jax.runs import RunError, RunSpec, latest_checkpoint, load_run
from dtrl_jax.train import build_agent, inspect_env, make_train

UAV_ENVS = ("MultiUAV-v0", "MultiUAVPartial-v0")


@dataclasses.dataclass
class SavedAgent:
    """A trained agent restored from a run folder.

    Attributes:
      spec: the run's ``RunSpec``.
      env, params: the environment as the agent sees it (wrapped with the global observation when
        the run used ``share_global_obs``; the twin is then taken as ready).
      raw_params: the environment's own ``EnvParams``.
      agent: the agent object (``q_values(agent_state, obs)``).
      agent_state: parameters / Q-table with a leading ``[seeds]`` axis.
      interval: logging intervals completed when the checkpoint was written.
    """

    spec: RunSpec
    env: Any
    params: Any
    raw_params: Any
    agent: Any
    agent_state: Any
    interval: int

    @property
    def seeds(self) -> int:
        return self.spec.seeds


def _agent_view(spec: RunSpec, env, params):
    """The env/params the agent acts on and the agent object, as ``make_train`` builds them."""
    twin = spec.config.twin
    if twin is not None and twin.share_global_obs:
        from dtrl_jax.twin.global_obs import GlobalObservation

        env = GlobalObservation(env)
        params = env.wrap_params(params)
    return env, params, build_agent(spec.config, inspect_env(env, params))


def load_agent(run_dir, *, warn=None) -> SavedAgent:
    """Restore the newest good checkpoint of ``run_dir`` (see ``runs.latest_checkpoint``)."""
    spec, _ = load_run(run_dir)
    env, raw_params = spec.make_env()
    train = make_train(spec.config, env, raw_params)
    template = jax.eval_shape(jax.vmap(train.init), spec.keys())[0]
    found = latest_checkpoint(run_dir, spec, template, warn=warn)
    if found is None:
        raise RunError(f"{run_dir} has no checkpoint yet; train it first (dtrl train ... --out {run_dir})")
    interval, runner, _ = found
    view_env, view_params, agent = _agent_view(spec, env, raw_params)
    return SavedAgent(spec, view_env, view_params, raw_params, agent, runner.agent_state, interval)


def default_max_steps(saved: SavedAgent) -> int:
    return int(getattr(saved.raw_params, "max_steps_in_episode", 1000))


def greedy_returns(saved: SavedAgent, episodes: int, key: jax.Array, max_steps: int | None = None):
    """Returns of ``episodes`` greedy episodes per seed on the physical environment.

    Returns:
      ``(returns, finished)``: float ``[seeds, episodes]`` undiscounted returns and bool
      ``[seeds, episodes]`` (False when an episode was still running after ``max_steps`` steps).
    """
    env, params, agent = saved.env, saved.params, saved.agent
    max_steps = max_steps or default_max_steps(saved)

    def episode(agent_state, key):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def step(carry, k):
            obs, state, ret, alive = carry
            k_act, k_env = jax.random.split(k)
            action = greedy_action(k_act, agent.q_values(agent_state, obs))
            obs, state, reward, terminated, truncated, _ = env.step(k_env, state, action, params)
            ret = ret + jnp.where(alive, reward.astype(jnp.float32), 0.0)
            alive = alive & ~(terminated | truncated)
            return (obs, state, ret, alive), None

        carry = (obs, state, jnp.float32(0.0), jnp.asarray(True))
        (_, _, ret, alive), _ = jax.lax.scan(step, carry, jax.random.split(k_run, max_steps))
        return ret, ~alive

    keys = jax.random.split(key, (saved.seeds, episodes))
    per_seed = jax.vmap(episode, in_axes=(None, 0))
    ret, finished = jax.jit(jax.vmap(per_seed))(saved.agent_state, keys)
    return np.asarray(ret), np.asarray(finished)


def uav_episode(saved: SavedAgent, key: jax.Array, seed_index: int = 0) -> dict[str, np.ndarray]:
    """Positions along one greedy episode of a MultiUAV run (no auto-reset at the end).

    Returns:
      ``{"uav": [T + 1, num_uavs, 2], "users": [T + 1, num_users, 2], "reward": [T],
      "area": float, "hangar": [2]}`` in metres, ``T = max_steps_in_episode``.
    """
    if saved.spec.env_id not in UAV_ENVS and not hasattr(saved.raw_params, "num_uavs"):
        raise RunError(f"--render draws MultiUAV episodes; this run's env is {saved.spec.env_id}")
    env, params, agent = saved.env, saved.params, saved.agent
    agent_state = jax.tree.map(lambda x: x[seed_index], saved.agent_state)
    steps = default_max_steps(saved)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def step(carry, k):
            obs, state = carry
            k_act, k_env = jax.random.split(k)
            action = greedy_action(k_act, agent.q_values(agent_state, obs))
            obs, state, reward, _, _ = env.step_env(k_env, state, action, params)
            return (obs, state), (state.uav_pos, state.user_pos, reward)

        _, (uav, users, reward) = jax.lax.scan(step, (obs, state), jax.random.split(k_run, steps))
        uav = jnp.concatenate([state.uav_pos[None], uav])
        users = jnp.concatenate([state.user_pos[None], users])
        return uav, users, reward

    uav, users, reward = jax.jit(run)(key)
    p = saved.raw_params
    return {
        "uav": np.asarray(uav), "users": np.asarray(users), "reward": np.asarray(reward),
        "area": float(p.area_size_m), "hangar": np.asarray([float(p.hangar_x_m), float(p.hangar_y_m)]),
    }


def _draw(ax, ep, upto: int | None = None, title: str | None = None):
    t = len(ep["reward"]) if upto is None else upto
    area = ep["area"]
    ax.clear()
    ax.set_xlim(-0.02 * area, 1.02 * area)
    ax.set_ylim(-0.02 * area, 1.02 * area)
    ax.set_aspect("equal")
    users, uav = ep["users"], ep["uav"]
    for j in range(users.shape[1]):
        ax.plot(users[: t + 1, j, 0], users[: t + 1, j, 1], color="0.6", lw=0.8)
    ax.scatter(users[0, :, 0], users[0, :, 1], facecolors="none", edgecolors="0.5", s=30, label="users at t=0")
    ax.scatter(users[t, :, 0], users[t, :, 1], color="k", s=18, label=f"users at t={t}")
    colors = [f"C{i}" for i in range(uav.shape[1])]
    for i in range(uav.shape[1]):
        ax.plot(uav[: t + 1, i, 0], uav[: t + 1, i, 1], color=colors[i], lw=1.8)
        ax.scatter(uav[t, i, 0], uav[t, i, 1], color=colors[i], marker="^", s=70, edgecolors="k",
                   label=f"UAV {i}")
    ax.scatter(*ep["hangar"], marker="*", color="gold", edgecolors="k", s=160, zorder=5, label="hangar")
    mean_rate = float(np.mean(ep["reward"][:t])) if t else float("nan")
    ax.set_title(title or f"greedy episode, step {t}: mean user rate {mean_rate:.2f} Mbps", fontsize=9)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def draw_uav_episode(ep: dict[str, np.ndarray], out, title: str | None = None) -> Path:
    """Save a PNG of the UAV trajectories and user movements of ``ep`` (from :func:`uav_episode`)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.4, 6), layout="constrained")
    _draw(fig.add_subplot(), ep, title=title)
    fig.savefig(out, dpi=110)
    return Path(out)


def animate_uav_episode(ep: dict[str, np.ndarray], out, fps: int = 10, every: int = 2) -> Path:
    """Save a GIF of ``ep`` (every ``every``-th step) with matplotlib's Pillow writer."""
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.2, 5), layout="constrained")
    ax = fig.add_subplot()
    frames = list(range(0, len(ep["reward"]) + 1, every))
    if frames[-1] != len(ep["reward"]):
        frames.append(len(ep["reward"]))
    anim = FuncAnimation(fig, lambda t: _draw(ax, ep, upto=t), frames=frames)
    anim.save(out, writer=PillowWriter(fps=fps), dpi=80)
    return Path(out)
