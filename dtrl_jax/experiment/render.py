"""Play back a saved agent: greedy returns (``dtrl eval``) and pictures of an episode.

``load_agent(run_dir)`` rebuilds the environment and agent of a run folder from its
``config.json`` and restores the physical agent's parameters from the newest good checkpoint.
``greedy_returns`` plays E greedy episodes per seed on the *physical* environment with
``dtrl_jax.evaluate.evaluate`` (the one greedy rule of the project: argmax, random tie-breaking).

Pictures (``dtrl eval --render``), one per environment family:

* MultiUAV: ``uav_episode`` + ``draw_uav_episode`` (trajectories) / ``animate_uav_episode`` (GIF;
  the artists are built once and only their data change per frame).
* AccessPointSelection: ``ap_episode`` + ``draw_ap_episode``: the vehicle's position over time on
  the road, coloured by the chosen AP, over the APs' coverage bands; failed tasks marked.
* EdgeTaskScheduling: ``draw_schedule``: a Gantt chart of the greedy task order (upload on the
  shared link, then computation on the edge server), with each task's deadline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dtrl_jax.evaluate import evaluate, policy_action
from dtrl_jax.experiment.runs import RunError, RunSpec, latest_checkpoint, load_run
from dtrl_jax.train import build_agent, inspect_env, make_train

UAV_ENVS = ("MultiUAV-v0", "MultiUAVPartial-v0")
AP_ENVS = ("AccessPointSelection-v0",)
EDGE_ENVS = ("EdgeTaskScheduling-v0",)
RENDERABLE = UAV_ENVS + AP_ENVS + EDGE_ENVS


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

    def per_seed(agent_state, k):
        out = evaluate(k, agent, agent_state, env, params, episodes, max_steps=max_steps)
        return out.returns, out.finished

    keys = jax.random.split(key, saved.seeds)
    ret, finished = jax.jit(jax.vmap(per_seed))(saved.agent_state, keys)
    return np.asarray(ret), np.asarray(finished)


def _greedy(agent, agent_state, k, obs):
    return policy_action(agent, agent_state, jax.random.bits(k, (3,), jnp.uint32), obs)


def record_episode(saved: SavedAgent, key: jax.Array, seed_index: int = 0, steps: int | None = None):
    """One greedy episode without auto-reset: ``(first_state, states [T], actions [T], rewards [T],
    infos [T], alive [T])`` (``alive[t]``: the episode had not ended before step t)."""
    env, params, agent = saved.env, saved.params, saved.agent
    agent_state = jax.tree.map(lambda x: x[seed_index], saved.agent_state)
    steps = steps or default_max_steps(saved)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def step(carry, k):
            obs, state, alive = carry
            k_act, k_env = jax.random.split(k)
            action = _greedy(agent, agent_state, k_act, obs)
            obs, new, reward, done, info = env.step_env(k_env, state, action, params)
            return (obs, new, alive & ~done), (new, action, reward, info, alive)

        _, (states, actions, rewards, infos, alive) = jax.lax.scan(
            step, (obs, state, jnp.asarray(True)), jax.random.split(k_run, steps))
        return state, states, actions, rewards, infos, alive

    return jax.device_get(jax.jit(run)(key))


def uav_episode(saved: SavedAgent, key: jax.Array, seed_index: int = 0) -> dict[str, np.ndarray]:
    """Positions along one greedy episode of a MultiUAV run (no auto-reset at the end).

    Returns:
      ``{"uav": [T + 1, num_uavs, 2], "users": [T + 1, num_users, 2], "reward": [T],
      "area": float, "hangar": [2]}`` in metres, ``T = max_steps_in_episode``.
    """
    if saved.spec.env_id not in UAV_ENVS and not hasattr(saved.raw_params, "num_uavs"):
        raise RunError(f"--render draws MultiUAV episodes; this run's env is {saved.spec.env_id}")
    first, states, _, reward, _, _ = record_episode(saved, key, seed_index)
    uav = np.concatenate([np.asarray(first.uav_pos)[None], np.asarray(states.uav_pos)])
    users = np.concatenate([np.asarray(first.user_pos)[None], np.asarray(states.user_pos)])
    p = saved.raw_params
    return {
        "uav": uav, "users": users, "reward": np.asarray(reward),
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
    """Save a GIF of ``ep`` (every ``every``-th step), blitted.

    The static part of the figure (axes, legend, hangar, users at t=0) is rendered once; each
    frame restores it and draws only the moving artists (trails, current positions, title), then
    Pillow writes the frames. ``benchmarks/render_gif.py`` times it against a full redraw per frame.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    fig = Figure(figsize=(6.2, 5), dpi=80, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _draw(ax, ep, upto=0)
    users, uav = ep["users"], ep["uav"]
    lines = ax.get_lines()
    user_trails, uav_trails = lines[: users.shape[1]], lines[users.shape[1]: users.shape[1] + uav.shape[1]]
    now_users, now_uavs = ax.collections[1], ax.collections[2: 2 + uav.shape[1]]
    now_users.set_label("users now")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    moving = [*user_trails, *uav_trails, now_users, *now_uavs, ax.title]
    for artist in moving:
        artist.set_animated(True)
    canvas.draw()  # the static background (animated artists are skipped) and the final layout
    fig.set_layout_engine("none")
    background = canvas.copy_from_bbox(fig.bbox)

    steps = list(range(0, len(ep["reward"]) + 1, every))
    if steps[-1] != len(ep["reward"]):
        steps.append(len(ep["reward"]))
    frames = []
    for t in steps:
        for j, ln in enumerate(user_trails):
            ln.set_data(users[: t + 1, j, 0], users[: t + 1, j, 1])
        for i, ln in enumerate(uav_trails):
            ln.set_data(uav[: t + 1, i, 0], uav[: t + 1, i, 1])
            now_uavs[i].set_offsets(uav[t, i][None])
        now_users.set_offsets(users[t])
        rate = float(np.mean(ep["reward"][:t])) if t else float("nan")
        ax.title.set_text(f"greedy episode, step {t}: mean user rate {rate:.2f} Mbps")
        canvas.restore_region(background)
        for artist in moving:
            fig.draw_artist(artist)
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]
        frames.append(Image.fromarray(np.ascontiguousarray(rgb)).convert("P", palette=Image.Palette.ADAPTIVE))
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return Path(out)


# ------------------------------------------------------------------------------ access-point selection
def ap_episode(saved: SavedAgent, key: jax.Array, seed_index: int = 0) -> dict[str, np.ndarray]:
    """One greedy AccessPointSelection episode: position [T], chosen AP [T], success [T], reward [T]
    (steps after the episode ended are dropped), and the APs' positions and radii (m)."""
    first, states, actions, rewards, infos, alive = record_episode(saved, key, seed_index)
    alive = np.asarray(alive)
    pos = np.concatenate([[float(first.position)], np.asarray(states.position, np.float64)])[:-1]
    p = saved.raw_params
    return {"position": pos[alive], "ap": np.asarray(actions)[alive], "reward": np.asarray(rewards)[alive],
            "success": np.asarray(infos["success"])[alive], "ap_position": np.asarray(p.ap_position_m),
            "ap_radius": np.asarray(p.ap_radius_m), "road": float(p.road_length_m)}


def draw_ap_episode(ep: dict[str, np.ndarray], out, title: str | None = None) -> Path:
    """Save a PNG: the vehicle's position per step, coloured by the AP it picked, over coverage bands."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.add_subplot()
    t = np.arange(len(ep["position"]))
    for i, (c, r) in enumerate(zip(ep["ap_position"], ep["ap_radius"])):
        ax.axhspan(c - r, c + r, color=f"C{i}", alpha=0.12, lw=0)
        ax.axhline(c, color=f"C{i}", lw=0.6, ls=":")
    for i in range(len(ep["ap_position"])):
        pick = ep["ap"] == i
        ax.scatter(t[pick], ep["position"][pick], color=f"C{i}", s=10, label=f"AP {i}")
    fail = ~ep["success"].astype(bool)
    ax.scatter(t[fail], ep["position"][fail], marker="x", color="k", s=22, label="task failed")
    ax.set_ylim(0, ep["road"])
    ax.set_xlabel("step")
    ax.set_ylabel("vehicle position on the road (m); bands: AP coverage")
    rate = float(np.mean(ep["success"])) if len(t) else float("nan")
    ax.set_title(title or f"greedy episode: {len(t)} tasks, {rate:.0%} delivered in time, "
                 f"return {float(np.sum(ep['reward'])):.1f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(out, dpi=110)
    return Path(out)


# ----------------------------------------------------------------------------------- edge scheduling
def schedule(saved: SavedAgent, key: jax.Array, seed_index: int = 0) -> dict[str, Any]:
    """The greedy task order of an EdgeTaskScheduling agent and its timeline (s), in NumPy.

    Tasks are uploaded one after another over the shared link (``size / rate``) and computed in
    order on the server once uploaded and once the previous one is done (``size * complexity /
    (1000 * f)``), as ``envs.edge_scheduling.schedule_cost``.
    """
    first, _, actions, rewards, infos, _ = record_episode(saved, key, seed_index, steps=1)
    from dtrl_jax.envs.edge_scheduling import decode_permutation

    p = saved.raw_params
    order = np.asarray(decode_permutation(int(actions[0]), p.num_tasks))
    size, comp, dead = (np.asarray(x, np.float64)[order] for x in (first.sizes, first.complexities, first.deadlines))
    ready = np.cumsum(size) / float(p.rate_mbps)
    upload_start = np.concatenate([[0.0], ready[:-1]])
    duration = size * comp / (1000.0 * float(p.frequency_ghz))
    start, finish, done = np.zeros_like(ready), np.zeros_like(ready), 0.0
    for j in range(len(order)):
        start[j] = max(ready[j], done)
        finish[j] = done = start[j] + duration[j]
    return {"order": order, "upload": np.stack([upload_start, ready], 1), "compute": np.stack([start, finish], 1),
            "deadline": dead, "missed": finish > dead, "cost": float(-rewards[0])}


def draw_schedule(sched: dict[str, Any], out, title: str | None = None) -> Path:
    """Save a Gantt chart of :func:`schedule`: one row per task in send order."""
    from matplotlib.figure import Figure

    n = len(sched["order"])
    fig = Figure(figsize=(8, 0.5 * n + 1.6), layout="constrained")
    ax = fig.add_subplot()
    for row, task in enumerate(sched["order"]):
        (u0, u1), (c0, c1) = sched["upload"][row], sched["compute"][row]
        ax.barh(row, u1 - u0, left=u0, color="C0", alpha=0.6, label="upload" if row == 0 else None)
        ax.barh(row, c1 - c0, left=c0, color="C3" if sched["missed"][row] else "C2",
                label=("compute" if row == 0 else None))
        ax.plot([sched["deadline"][row]] * 2, [row - 0.4, row + 0.4], color="k", lw=1.5,
                label="deadline" if row == 0 else None)
    ax.set_yticks(range(n), [f"task {t}" for t in sched["order"]])
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    missed = int(np.sum(sched["missed"]))
    ax.set_title(title or f"greedy order {list(map(int, sched['order']))}: cost {sched['cost']:.3g} s, "
                 f"{missed} deadline(s) missed (red)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(out, dpi=110)
    return Path(out)
