"""``MultiUAV-v0`` and ``MultiUAVPartial-v0``: UAVs as movable access points (paper case 2).

Scenario (Cheng et al., IEEE Network 2024, "DT-enhanced DQL for multi-UAV trajectories"): ground users
in a square area without a base station are served by UAVs flying at a fixed height and speed, all
starting at one hangar point. OFDM gives every user its own sub-band, so there is no interference; the
rate of a user-UAV link follows from Friis' free-space law and Shannon's formula, and each user is
served by the UAV that gives it the highest rate. Every step each UAV moves one of {stay, N, S, E, W};
the reward is the mean user rate in Mbps; an episode is truncated after ``N = 100`` steps and never
terminates otherwise (there is no safety failure, so ``info`` has no ``violation`` key).

What the paper states: 10 users in an area without a base station, 4 UAVs (M = 4) starting at one
hangar, height 5 m, speed 8 m/s, p = 100 mW, noise -174 dBm/Hz, OFDM without interference, Friis'
law, each user served by its best UAV, N = 100 (read here as the horizon), reward = mean rate. What it
leaves open, and we choose (each an ``EnvParams`` field whose docstring gives the reason): the area
(500 m x 500 m is our choice; the paper names no size), the slot duration, the per-user bandwidth, the
carrier, the hangar position, the user layout and mobility, the action set (we give each UAV
{stay, N, S, E, W}) and the observation radius of the partial variant.

Why the decision matters, and by how much: at these powers the SNR is high, so a user's rate is
``B log2(1 + k / d^2)`` ~ ``B (log2 k - 2 log2 d)``: halving a user's distance to its UAV gains a fixed
``2 B`` bit/s whatever the distance, and the stake of the whole trajectory is a few tens of per cent of
the rate (hangar ~3.3 Mbps, UAVs at the users' k-means centroids ~4.1 Mbps with the defaults; the
paper's Fig. 5 spans 4.5-5.5 Mbps, a similar ratio). The bandwidth only rescales every rate, so it
changes no decision; the area and the speed x slot product set how many steps the fleet needs to
reach the users (~30 steps across half the area) within the 100-step horizon, which is what makes
the trajectory, not one move, the decision.

Action factors: the joint action is the product of one move per UAV; :meth:`MultiUAV.action_dims`
declares the factors ``(5,) * num_uavs`` (factor i = UAV i, the base-5 digit of weight ``5**i``), so a
factorised (branching) Q-head can learn one move per UAV while the joint index stays the contract.
:meth:`MultiUAV.afterstate_observations` also declares what each factor's choice does to the
observation (UAV i's coordinates move by one step, clipped to the area), so an afterstate Q-head can
value a move as the value of the observation it leads to.

Reference policies (not learned; functions of the true state, for scale in benchmarks):
:func:`random_policy`, :func:`hangar_policy` (every UAV stays), :func:`myopic_policy` (argmax over all
joint actions of the next mean rate with the users where they are) and :func:`centroid_policy` (each
UAV flies to its k-means centroid of the users and hovers); :func:`policy_episode_rates` rolls one out.

Conventions
-----------
* Coordinates in metres, ``x`` east and ``y`` north, the area is ``[0, area_size_m]^2``; users are on
  the ground, UAVs at ``uav_height_m``; link distances are 3-D.
* Joint action ``a`` in ``[0, 5**num_uavs)``: UAV ``i`` makes move ``(a // 5**i) % 5`` (UAV 0 is the
  least significant base-5 digit), with moves ``0 = stay, 1 = N (+y), 2 = S (-y), 3 = E (+x),
  4 = W (-x)``; see :func:`decode_action` / :func:`encode_action`. A UAV flies
  ``uav_speed_mps * slot_duration_s`` metres per step and is clipped to the area.
* Order inside a step: UAVs move, users take one random-walk step, then rates (hence reward and
  observation) are computed at the new positions.
* User random walk: each per-axis step is uniform on 256 levels with standard deviation
  ``user_speed_std_mps * slot_duration_s`` (see :func:`user_steps`), not Gaussian: a quarter of the
  random bits of a normal draw, and the same Gaussian drift over many steps.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from dtrl_jax._checks import check_number, check_positive_int, is_concrete
from dtrl_jax.envs.channel import SPEED_OF_LIGHT_MPS, dbm_to_watt, free_space_rate
from dtrl_jax.envs.registry import build_params, register
from dtrl_jax.envs.spec import Action, StepResult

_OWNER = "MultiUAVParams"
NUM_MOVES = 5
# Unit vectors of the per-UAV moves: stay, N, S, E, W (step_env computes the same deltas from the
# move digit by comparisons, without a table lookup).
MOVES = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0]], np.float32)
# user_steps: levels k - 127.5 (k = 0..255) have variance (256**2 - 1) / 12; this scale makes it 1.
_STEP_SCALE = float(np.sqrt(12.0 / (256**2 - 1)))
# 5**13 < 2**31 - 1 < 5**14: the joint action index must fit in int32.
MAX_UAVS = 13


@struct.dataclass
class EnvState(environment.EnvState):
    """State of ``MultiUAV``.

    Attributes:
      uav_pos: ``[num_uavs, 2]`` float32 horizontal UAV positions (m).
      user_pos: ``[num_users, 2]`` float32 user positions (m).
      time: steps taken in the episode.
    """

    uav_pos: jax.Array
    user_pos: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Parameters of ``MultiUAV-v0`` / ``MultiUAVPartial-v0``.

    ``num_users``, ``num_uavs`` and ``resample_users`` are static (they fix shapes or code paths);
    every other field is traced, so a stack of params (same static fields) can be vmapped.
    """

    area_size_m: float = 500.0
    """Side of the square service area (m). Our choice (the paper gives no size): 500 m, so that from
    the hangar on the south edge the users are 0-560 m away and reaching them takes tens of 8 m steps,
    a good part of the 100-step horizon (a trajectory problem, not a single move)."""
    uav_height_m: float = 5.0
    """UAV flight height (m). Paper: 5 m."""
    uav_speed_mps: float = 8.0
    """UAV speed (m/s). Paper: 8 m/s."""
    slot_duration_s: float = 1.0
    """Duration of one decision step (s). Our choice (paper silent): 1 s, so a UAV flies 8 m per step
    and can cross the area (~60 steps) well within the 100-step horizon."""
    tx_power_w: float = 0.1
    """Transmit power per link (W). Paper: p = 100 mW."""
    noise_psd_dbm_hz: float = -174.0
    """Thermal noise power spectral density (dBm/Hz). Paper: sigma^2 = -174 dBm/Hz."""
    bandwidth_hz: float = 180e3
    """Bandwidth of each user's OFDM sub-band (Hz). Our choice (paper silent): 180 kHz, one LTE/NR
    resource block (12 sub-carriers at 15 kHz). It sets the rate scale (rate ~ bandwidth x spectral
    efficiency): 5.2 Mbps at 5 m (under a UAV), 3.7 at 100 m, 3.1 at 300 m, the same order as the
    paper's Fig. 5 (4.5-5.5 Mbps)."""
    carrier_hz: float = 2.4e9
    """Carrier frequency (Hz). Our choice (paper silent): 2.4 GHz, the usual UAV/ISM band."""
    hangar_x_m: float = 250.0
    """Hangar (common UAV start) x (m). Our choice (paper silent): middle of the south edge, so the
    UAVs must fly into the area to serve anyone well."""
    hangar_y_m: float = 0.0
    """Hangar y (m). See ``hangar_x_m``."""
    user_speed_std_mps: float = 1.0
    """Per-axis standard deviation of a user's random-walk velocity (m/s). Our choice (paper silent):
    pedestrian ~1 m/s steps, clipped to the area, so the future is stochastic and worth predicting
    while the layout stays recognisable over an episode (~10 m drift in 100 s). Each per-axis step is
    uniform (256 levels, zero mean, exactly this standard deviation times ``slot_duration_s``; support
    about +-1.73 std), not Gaussian: see :func:`user_steps` (a quarter of the random bits of a normal
    draw, for throughput); the drift over many steps is Gaussian all the same."""
    user_seed: int = 0
    """Seed of the initial user layout (uniform over the area). Our choice: the scenario (layout) is
    fixed per params, as in the paper's single scenario; different seeds give different scenarios.
    Ignored when ``resample_users`` is True."""
    observe_radius_m: float = 150.0
    """Horizontal sensing radius of each UAV in ``MultiUAVPartial-v0`` (m). Our choice (paper silent):
    150 m, so from the hangar only nearby users are visible and the fleet must explore to see them all.
    Unused by the fully observed ``MultiUAV-v0``."""
    max_steps_in_episode: int = 100
    """Horizon (steps); the episode is truncated there. Paper: N = 100."""
    num_users: int = struct.field(pytree_node=False, default=10)
    """Number of ground users (static: fixes shapes). Paper: 10."""
    num_uavs: int = struct.field(pytree_node=False, default=4)
    """Number of UAVs (static: fixes shapes and ``5**num_uavs`` actions). Paper: M = 4."""
    resample_users: bool = struct.field(pytree_node=False, default=False)
    """Static. False (default): every reset restores the layout drawn from ``user_seed``. True: each
    reset draws a fresh uniform layout from the reset key (a distribution over scenarios)."""


def validate_params(params: EnvParams) -> None:
    """Raise ``ValueError`` (``TypeError`` for wrong kinds) naming the first bad field of ``params``."""
    o = _OWNER
    check_positive_int(o, "num_users", params.num_users)
    check_positive_int(o, "num_uavs", params.num_uavs)
    if params.num_uavs > MAX_UAVS:
        raise ValueError(
            f"{o}.num_uavs={params.num_uavs} is out of range; expected an integer in [1, {MAX_UAVS}] "
            f"(the joint action 5**num_uavs must fit in int32)"
        )
    if not isinstance(params.resample_users, (bool, np.bool_)):
        raise TypeError(f"{o}.resample_users={params.resample_users!r}: expected a bool")
    check_number(o, "area_size_m", params.area_size_m, low=0.0, low_open=True)
    check_number(o, "uav_height_m", params.uav_height_m, low=0.0)
    check_number(o, "uav_speed_mps", params.uav_speed_mps, low=0.0, low_open=True)
    check_number(o, "slot_duration_s", params.slot_duration_s, low=0.0, low_open=True)
    check_number(o, "tx_power_w", params.tx_power_w, low=0.0, low_open=True)
    check_number(o, "noise_psd_dbm_hz", params.noise_psd_dbm_hz, low=-300.0, high=0.0)
    check_number(o, "bandwidth_hz", params.bandwidth_hz, low=0.0, low_open=True)
    check_number(o, "carrier_hz", params.carrier_hz, low=0.0, low_open=True)
    area = params.area_size_m
    area_high = float(np.max(np.asarray(area))) if is_concrete(area) else None
    check_number(o, "hangar_x_m", params.hangar_x_m, low=0.0, high=area_high)
    check_number(o, "hangar_y_m", params.hangar_y_m, low=0.0, high=area_high)
    check_number(o, "user_speed_std_mps", params.user_speed_std_mps, low=0.0)
    check_number(o, "user_seed", params.user_seed, low=0, high=2**31 - 1, integer=True)
    check_number(o, "observe_radius_m", params.observe_radius_m, low=0.0, low_open=True)
    check_number(o, "max_steps_in_episode", params.max_steps_in_episode, low=1, integer=True)


def decode_action(action: jax.Array, num_uavs: int) -> jax.Array:
    """Joint action index -> ``[num_uavs]`` int32 per-UAV moves (base-5 digits, UAV 0 least significant)."""
    # One scalar-constant division per digit (XLA turns it into a multiply and shifts); dividing by a
    # vector of powers is a per-element integer division, which CPU vector units do not have.
    action = jnp.asarray(action, jnp.int32)
    return jnp.stack([(action // NUM_MOVES**i) % NUM_MOVES for i in range(num_uavs)], axis=-1)


def encode_action(moves) -> jax.Array:
    """Per-UAV moves ``[..., num_uavs]`` -> joint action index (inverse of :func:`decode_action`)."""
    moves = jnp.asarray(moves, jnp.int32)
    powers = jnp.asarray(NUM_MOVES ** np.arange(moves.shape[-1]), jnp.int32)
    return jnp.sum(moves * powers, axis=-1)


def rate_matrix_bps(uav_pos: jax.Array, user_pos: jax.Array, params: EnvParams) -> jax.Array:
    """``[num_users, num_uavs]`` achievable rates (bit/s) from 3-D user-UAV distances."""
    diff = user_pos[:, None, :] - uav_pos[None, :, :]
    dist = jnp.sqrt(jnp.sum(diff**2, axis=-1) + jnp.asarray(params.uav_height_m, jnp.float32) ** 2)
    return free_space_rate(
        dist,
        tx_power_w=params.tx_power_w,
        bandwidth_hz=params.bandwidth_hz,
        carrier_hz=params.carrier_hz,
        noise_psd_dbm_hz=params.noise_psd_dbm_hz,
    )


#: Up to this many users (or UAVs), reductions over them are unrolled into elementwise ops, which XLA
#: fuses with their producers; a reduction over a short axis is a separate, slower kernel on CPU.
_MAX_UNROLL = 64


def _mean_and_min(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and minimum (float32 scalars) of a ``[n]`` vector; unrolled for ``n <= _MAX_UNROLL``."""
    n = values.shape[0]
    if n > _MAX_UNROLL:
        return jnp.mean(values).astype(jnp.float32), jnp.min(values).astype(jnp.float32)
    total, worst = values[0], values[0]
    for i in range(1, n):
        total, worst = total + values[i], jnp.minimum(worst, values[i])
    return (total / n).astype(jnp.float32), worst.astype(jnp.float32)


def _min_sq_distance(user_x, user_y, uav_x, uav_y) -> jax.Array:
    """``[num_users]`` squared horizontal distance from each user to its nearest UAV."""
    if uav_x.shape[0] > _MAX_UNROLL:
        return jnp.min((user_x[:, None] - uav_x) ** 2 + (user_y[:, None] - uav_y) ** 2, axis=1)
    d2 = None
    for j in range(uav_x.shape[0]):
        dx = user_x - uav_x[j]
        dy = user_y - uav_y[j]
        d2_j = dx * dx + dy * dy
        d2 = d2_j if d2 is None else jnp.minimum(d2, d2_j)
    return d2


def _best_rates_mbps(uav_x, uav_y, user_x, user_y, params: EnvParams) -> jax.Array:
    """``[num_users]`` best rate (Mbps) per user from separate x / y coordinate vectors.

    The free-space rate is non-increasing in the distance, so the best UAV of a user is its nearest
    one: the squared horizontal distance is minimised over the UAVs first, and the Shannon rate
    (one ``log2`` per user) is computed for that distance only. Same formula as
    :func:`dtrl_jax.envs.channel.free_space_rate` (distance clamped at 1 m), written on the squared
    distance so no square root is needed: ``rate = B log2(1 + k / max(d^2 + h^2, 1))`` with
    ``k = p (c / (4 pi f))^2 / (N0 B)``.
    """
    f32 = jnp.float32
    d2 = _min_sq_distance(user_x, user_y, uav_x, uav_y)
    h = jnp.asarray(params.uav_height_m, f32)
    dist2 = jnp.maximum(d2 + h * h, 1.0)
    bw = jnp.asarray(params.bandwidth_hz, f32)
    noise = dbm_to_watt(params.noise_psd_dbm_hz) * bw
    wavelength = SPEED_OF_LIGHT_MPS / jnp.asarray(params.carrier_hz, f32)
    # p (lambda / 4 pi)^2 / noise, as free_space_rate groups it (power x gain, then / noise).
    k = jnp.asarray(params.tx_power_w, f32) * (wavelength / (4.0 * jnp.pi)) ** 2
    k = k / jnp.where(noise > 0, noise, 1.0)
    # bw * 1e-6 * log2(1 + snr): Mbps; a zero bandwidth gives a zero rate (not NaN), as in free_space_rate.
    rate_bps = jnp.where(bw > 0, bw * jnp.log2(1.0 + jnp.maximum(k / dist2, 0.0)), 0.0)
    return rate_bps * 1e-6


def user_rates_mbps(uav_pos: jax.Array, user_pos: jax.Array, params: EnvParams) -> jax.Array:
    """``[num_users]`` rate (Mbps) of each user from its best UAV.

    Equal (to float32 rounding) to the row maxima of :func:`rate_matrix_bps` times 1e-6, computed as
    the rate at each user's nearest UAV (the rate falls with distance), see :func:`_best_rates_mbps`.
    """
    uav_pos = jnp.asarray(uav_pos, jnp.float32)
    user_pos = jnp.asarray(user_pos, jnp.float32)
    return _best_rates_mbps(uav_pos[:, 0], uav_pos[:, 1], user_pos[:, 0], user_pos[:, 1], params)


def user_steps(key: jax.Array, num_users: int, std) -> jax.Array:
    """``[num_users, 2]`` float32 random-walk displacements: i.i.d. per axis, zero mean, std ``std``.

    Each displacement is uniform on 256 evenly spaced values symmetric about 0 (8 random bits per
    axis, four per 32-bit word: one ``jax.random.bits`` call of ``ceil(num_users / 2)`` words), scaled
    so that its standard deviation is exactly ``std`` (the support is about ``+-sqrt(3) std``). This is
    far cheaper than ``jax.random.normal`` (a quarter of the random words and no inverse error
    function); summed over many steps the displacement is Gaussian all the same (central limit).
    """
    words = jax.random.bits(key, (-(-num_users // 2),), jnp.uint32)
    shifts = jnp.asarray([0, 8, 16, 24], jnp.uint32)
    levels = jnp.right_shift(words[:, None], shifts[None, :]) & jnp.uint32(0xFF)
    levels = levels.reshape(-1)[: 2 * num_users].reshape(num_users, 2).astype(jnp.float32)
    return (levels - 127.5) * (jnp.asarray(std, jnp.float32) * _STEP_SCALE)


def initial_user_positions(key: jax.Array, params: EnvParams) -> jax.Array:
    """``[num_users, 2]`` uniform layout over the area drawn from ``key``."""
    u = jax.random.uniform(key, (params.num_users, 2), jnp.float32)
    return u * jnp.asarray(params.area_size_m, jnp.float32)


class MultiUAV(environment.Environment[EnvState, EnvParams]):
    """``MultiUAV-v0``: UAV trajectories maximising the mean user rate, fully observed.

    Observation (float32, every entry in ``[0, 1]``), length ``2 * num_uavs + 2 * num_users + 1``::

        [ uav_pos / area   (num_uavs x (x, y), row-major),
          user_pos / area  (num_users x (x, y), row-major),
          time / max_steps_in_episode ]

    Global-observation contract (``share_global_obs``): every variant implements
    ``global_observation(state, params) -> float32 vector``, the fully observed observation above for
    ``state``. The training loop reads it from the twin's identical domain (which mirrors the physical
    state) and concatenates it to the agent's own observation. For this fully observed variant it equals
    ``get_obs``; for ``MultiUAVPartial-v0`` it is the information the partial observation hides.

    Args:
      num_users, num_uavs: shape defaults carried by ``default_params`` (and hence ``num_actions``);
        ``None`` keeps the paper's 10 users and 4 UAVs. Params passed to ``step``/``reset`` must have
        the same shape fields as the env was built with for ``num_actions`` to be right.
    """

    def __init__(self, num_users: int | None = None, num_uavs: int | None = None):
        super().__init__()
        defaults = EnvParams()
        self.num_users = defaults.num_users if num_users is None else num_users
        self.num_uavs = defaults.num_uavs if num_uavs is None else num_uavs
        check_positive_int(_OWNER, "num_users", self.num_users)
        check_positive_int(_OWNER, "num_uavs", self.num_uavs)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(num_users=self.num_users, num_uavs=self.num_uavs)

    # ----------------------------------------------------------------- dynamics
    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: EnvState,
        action: int | float | jax.Array,
        params: EnvParams | None = None,
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """gymnax's auto-resetting step (same outputs and ``info`` keys), specialised for speed.

        Two differences from ``gymnax.environments.environment.Environment.step``, neither visible in
        the outputs' distribution: (1) gymnax splits ``key`` into a step key and a reset key every
        step; with the fixed layout (``resample_users=False``, the default) :meth:`reset_env` ignores
        its key, so ``key`` goes to :meth:`step_env` unsplit (with ``resample_users=True`` it is split
        as gymnax does). (2) The observation is computed once, from the selected (stepped or reset)
        state, instead of for both states and then selected: ``get_obs`` is a deterministic function
        of the state, so the result is the same. ``info["final_observation"]`` is the observation of
        the stepped state, as in gymnax.
        """
        if params is None:
            params = self.default_params
        if params.resample_users:
            key_step, key_reset = jax.random.split(key)
        else:
            key_step = key_reset = key
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        _, state_re = self.reset_env(key_reset, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        # The observation is a function of the state (get_obs takes no key), so observing the selected
        # state equals gymnax's select between the reset and the stepped observations.
        obs = jax.lax.stop_gradient(self.get_obs(state, params))
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_st}
        return obs, state, reward, terminated, truncated, info

    def step_env(self, key: jax.Array, state: EnvState, action: Action, params: EnvParams) -> StepResult:
        """Move the UAVs by ``action``, random-walk the users, reward the mean best rate (Mbps)."""
        f32 = jnp.float32
        area = jnp.asarray(params.area_size_m, f32)
        # Per-UAV move deltas from the base-5 digits by comparisons (no table gather):
        # 1 = N (+y), 2 = S (-y), 3 = E (+x), 4 = W (-x), 0 = stay.
        moves = decode_action(action, params.num_uavs)
        step_m = jnp.asarray(params.uav_speed_mps * params.slot_duration_s, f32)
        move_x = (moves == 3).astype(f32) - (moves == 4).astype(f32)
        move_y = (moves == 1).astype(f32) - (moves == 2).astype(f32)
        uav_pos = jnp.clip(state.uav_pos + jnp.stack([move_x, move_y], axis=-1) * step_m, 0.0, area)
        uav_x, uav_y = uav_pos[:, 0], uav_pos[:, 1]

        sigma = jnp.asarray(params.user_speed_std_mps * params.slot_duration_s, f32)
        user_pos = jnp.clip(state.user_pos + user_steps(key, params.num_users, sigma), 0.0, area)

        rates = _best_rates_mbps(uav_x, uav_y, user_pos[:, 0], user_pos[:, 1], params)
        reward, worst = _mean_and_min(rates)
        new_state = EnvState(uav_pos=uav_pos, user_pos=user_pos, time=state.time + 1)
        terminated = self.is_terminated(new_state, params)
        info = {
            "mean_rate_mbps": reward,
            "min_rate_mbps": worst,
        }
        return (
            jax.lax.stop_gradient(self.get_obs(new_state, params)),
            jax.lax.stop_gradient(new_state),
            reward,
            terminated,
            info,
        )

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """UAVs at the hangar; users at the ``user_seed`` layout (or a fresh one if ``resample_users``)."""
        layout_key = key if params.resample_users else jax.random.key(params.user_seed)
        user_pos = initial_user_positions(layout_key, params)
        hangar = jnp.stack(
            [jnp.asarray(params.hangar_x_m, jnp.float32), jnp.asarray(params.hangar_y_m, jnp.float32)]
        )
        uav_pos = jnp.broadcast_to(hangar, (params.num_uavs, 2))
        state = EnvState(uav_pos=uav_pos, user_pos=user_pos, time=0)
        return self.get_obs(state, params), state

    # ------------------------------------------------------------- observation
    def global_observation(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """Fully observed observation of ``state`` (see the class docstring for the layout)."""
        if params is None:
            params = self.default_params
        area = jnp.asarray(params.area_size_m, jnp.float32)
        t = jnp.asarray(state.time, jnp.float32) / jnp.asarray(params.max_steps_in_episode, jnp.float32)
        return jnp.concatenate(
            [
                (state.uav_pos / area).reshape(-1),
                (state.user_pos / area).reshape(-1),
                t[None],
            ]
        ).astype(jnp.float32)

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        """Agent observation; for the fully observed variant, the global observation."""
        return self.global_observation(state, params)

    def observation_size(self, params: EnvParams) -> int:
        """Length of the agent observation vector."""
        return 2 * params.num_uavs + 2 * params.num_users + 1

    def global_observation_size(self, params: EnvParams) -> int:
        """Length of :meth:`global_observation`."""
        return 2 * params.num_uavs + 2 * params.num_users + 1

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Never: this environment has no failure state and only truncates at the horizon."""
        return jnp.array(False)

    # ------------------------------------------------------------------ spaces
    def action_dims(self, params: EnvParams | None = None) -> tuple[int, ...]:
        """The action factors: one move in {stay, N, S, E, W} per UAV, ``(5,) * num_uavs``.

        Joint index = ``sum_i move_i * 5**i`` (factor 0 = UAV 0 is the least significant), the
        mixed-radix order of :func:`dtrl_jax.agents.networks.factor_actions`.
        """
        n = self.num_uavs if params is None else params.num_uavs
        return (NUM_MOVES,) * int(n)

    def afterstate_observations(self, obs: jax.Array, params: EnvParams | None = None) -> jax.Array:
        """``[sum_i n_i, obs_size]``: ``obs`` after each single-UAV move alone (what an afterstate
        Q-head, ``DQNConfig.head='afterstate'``, evaluates its value network at).

        Row ``5 i + m`` is ``obs`` with UAV ``i`` moved by ``m`` (stay, N, S, E, W) and every other UAV,
        the users and the time feature as they are: the post-decision position before the users'
        random-walk step. The move is clipped to the area exactly as in :meth:`step_env` (a UAV at the
        south edge that moves S stays where it is), so a blocked move has the same afterstate as
        staying. Only the UAV coordinates change, which is also true of ``MultiUAVPartial-v0``'s
        observation: its user part (positions and visibility flags) is kept as observed before the
        move, since who becomes visible after it is not a function of the observation.
        """
        if params is None:
            params = self.default_params
        n = self.num_uavs
        f32 = jnp.float32
        obs = jnp.asarray(obs, f32)
        step = jnp.asarray(params.uav_speed_mps * params.slot_duration_s, f32) / jnp.asarray(params.area_size_m, f32)
        # Static unit deltas [uavs, moves, obs]: row block i moves coordinates 2 i, 2 i + 1 only.
        unit = np.zeros((n, NUM_MOVES, obs.shape[0]), np.float32)
        for i in range(n):
            unit[i, :, 2 * i : 2 * i + 2] = MOVES
        rows = obs + jnp.asarray(unit) * step
        rows = jnp.concatenate([jnp.clip(rows[..., : 2 * n], 0.0, 1.0), rows[..., 2 * n :]], axis=-1)
        return jnp.reshape(rows, (n * NUM_MOVES, obs.shape[0]))

    @property
    def name(self) -> str:
        return "MultiUAV-v0"

    @property
    def num_actions(self) -> int:
        return NUM_MOVES**self.num_uavs

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        """Joint action over all UAVs: ``Discrete(5 ** num_uavs)``."""
        n = self.num_uavs if params is None else params.num_uavs
        return spaces.Discrete(NUM_MOVES**n)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """Box ``[0, 1]^observation_size`` (float32)."""
        return spaces.Box(0.0, 1.0, (self.observation_size(params),), jnp.float32)

    def state_space(self, params: EnvParams) -> spaces.Dict:
        area = params.area_size_m
        return spaces.Dict(
            {
                "uav_pos": spaces.Box(0.0, area, (params.num_uavs, 2), jnp.float32),
                "user_pos": spaces.Box(0.0, area, (params.num_users, 2), jnp.float32),
                "time": spaces.Discrete(params.max_steps_in_episode),
            }
        )


class MultiUAVPartial(MultiUAV):
    """``MultiUAVPartial-v0``: same dynamics as ``MultiUAV-v0``; each UAV senses users within a radius.

    A user is visible when its horizontal distance to at least one UAV is ``<= observe_radius_m``
    (the fleet pools what its UAVs sense). Observation (float32 in ``[0, 1]``), fixed length
    ``2 * num_uavs + 3 * num_users + 1``::

        [ uav_pos / area                     (num_uavs x (x, y)),
          visible * user_pos / area          (num_users x (x, y); zeros for unseen users),
          visible                            (num_users flags, 1.0 = seen),
          time / max_steps_in_episode ]

    ``global_observation(state, params)`` returns the fully observed ``MultiUAV-v0`` observation of the
    same state (length ``2 * num_uavs + 2 * num_users + 1``): the training loop reads it from the twin's
    identical domain and concatenates it to this observation (``share_global_obs``), turning the POMDP
    into an MDP.
    """

    def visibility(self, state: EnvState, params: EnvParams) -> jax.Array:
        """``[num_users]`` bool: user within ``observe_radius_m`` (horizontal) of at least one UAV."""
        d2 = _min_sq_distance(state.user_pos[:, 0], state.user_pos[:, 1], state.uav_pos[:, 0], state.uav_pos[:, 1])
        r = jnp.asarray(params.observe_radius_m, jnp.float32)
        return d2 <= r * r

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        """Masked observation (see the class docstring for the layout)."""
        if params is None:
            params = self.default_params
        area = jnp.asarray(params.area_size_m, jnp.float32)
        vis = self.visibility(state, params).astype(jnp.float32)
        t = jnp.asarray(state.time, jnp.float32) / jnp.asarray(params.max_steps_in_episode, jnp.float32)
        return jnp.concatenate(
            [
                (state.uav_pos / area).reshape(-1),
                (state.user_pos / area * vis[:, None]).reshape(-1),
                vis,
                t[None],
            ]
        ).astype(jnp.float32)

    def observation_size(self, params: EnvParams) -> int:
        return 2 * params.num_uavs + 3 * params.num_users + 1

    @property
    def name(self) -> str:
        return "MultiUAVPartial-v0"


def _factory(env_cls: type[MultiUAV]):
    def factory(**overrides: Any) -> tuple[MultiUAV, EnvParams]:
        params = build_params(EnvParams, overrides, validate_params)
        return env_cls(num_users=params.num_users, num_uavs=params.num_uavs), params

    return factory


register(
    "MultiUAV-v0",
    _factory(MultiUAV),
    "4 UAVs fly from a hangar to serve 10 random-walking users (Friis/OFDM); reward = mean rate, Mbps",
)
register(
    "MultiUAVPartial-v0",
    _factory(MultiUAVPartial),
    "MultiUAV-v0 where each UAV senses only users within observe_radius_m; global obs via the twin",
)


# ------------------------------------------------------------------ reference policies
# Each is ``policy(key, state, params) -> joint action`` (int32), a function of the true state.


def random_policy(key: jax.Array, state: EnvState, params: EnvParams) -> jax.Array:
    """A uniform joint action."""
    return jax.random.randint(key, (), 0, NUM_MOVES**params.num_uavs, jnp.int32)


def hangar_policy(key: jax.Array, state: EnvState, params: EnvParams) -> jax.Array:
    """Every UAV stays (at the hangar from a reset): the no-decision baseline."""
    return jnp.int32(0)


def _moved(uav_pos: jax.Array, moves: jax.Array, params: EnvParams) -> jax.Array:
    """UAV positions after per-UAV ``moves`` (``[..., num_uavs]``), clipped as in ``step_env``."""
    f32 = jnp.float32
    step_m = jnp.asarray(params.uav_speed_mps * params.slot_duration_s, f32)
    delta = jnp.asarray(MOVES)[moves] * step_m
    return jnp.clip(uav_pos + delta, 0.0, jnp.asarray(params.area_size_m, f32))


def myopic_policy(key: jax.Array, state: EnvState, params: EnvParams) -> jax.Array:
    """The joint action with the highest next mean rate, users held where they are (the walk has
    zero mean); exact ties (e.g. moves of a UAV that serves nobody) broken uniformly at random.

    A one-step model-based planner: it sees every action's immediate effect but nothing beyond it.
    """
    n = NUM_MOVES**params.num_uavs
    moves = decode_action(jnp.arange(n, dtype=jnp.int32), params.num_uavs)  # [A, uavs]
    uav = _moved(state.uav_pos, moves, params)  # [A, uavs, 2]
    rates = jax.vmap(lambda u: jnp.mean(user_rates_mbps(u, state.user_pos, params)))(uav)
    best = rates >= jnp.max(rates)
    noise = jax.random.uniform(key, (n,))
    return jnp.argmax(jnp.where(best, noise, -1.0)).astype(jnp.int32)


def kmeans_centroids(points: jax.Array, k: int, iters: int = 50) -> jax.Array:
    """Lloyd's k-means ``[k, 2]`` with a deterministic farthest-point start (southernmost point first).

    An empty cluster keeps its centroid. Deterministic, so the centroid order is stable while the
    points drift slowly (UAV i keeps its centroid i).
    """
    points = jnp.asarray(points, jnp.float32)
    first = points[jnp.argmin(points[:, 1])]
    cents = [first]
    for _ in range(1, k):
        d = jnp.min(jnp.stack([jnp.sum((points - c) ** 2, -1) for c in cents]), axis=0)
        cents.append(points[jnp.argmax(d)])
    cents = jnp.stack(cents)

    def lloyd(_, c):
        assign = jnp.argmin(jnp.sum((points[:, None] - c[None]) ** 2, -1), axis=1)
        onehot = jax.nn.one_hot(assign, k, dtype=jnp.float32)  # [P, k]
        count = jnp.sum(onehot, axis=0)
        mean = (onehot.T @ points) / jnp.maximum(count, 1.0)[:, None]
        return jnp.where(count[:, None] > 0, mean, c)

    return jax.lax.fori_loop(0, iters, lloyd, cents)


def centroid_policy(key: jax.Array, state: EnvState, params: EnvParams) -> jax.Array:
    """UAV i flies towards k-means centroid i of the users' current positions (larger axis first,
    one move a step) and stays once within half a step of it."""
    target = kmeans_centroids(state.user_pos, params.num_uavs)
    d = target - state.uav_pos
    step_m = jnp.asarray(params.uav_speed_mps * params.slot_duration_s, jnp.float32)
    use_x = jnp.abs(d[:, 0]) >= jnp.abs(d[:, 1])
    dist = jnp.where(use_x, jnp.abs(d[:, 0]), jnp.abs(d[:, 1]))
    move = jnp.where(use_x, jnp.where(d[:, 0] > 0, 3, 4), jnp.where(d[:, 1] > 0, 1, 2))
    return encode_action(jnp.where(dist < step_m / 2, 0, move))


def centroid_placement_rate(state: EnvState, params: EnvParams) -> jax.Array:
    """Mean rate (Mbps) with the UAVs placed at the users' k-means centroids (a static-placement level)."""
    return jnp.mean(user_rates_mbps(kmeans_centroids(state.user_pos, params.num_uavs), state.user_pos, params))


#: The reference policies by name (``policy(key, state, params) -> joint action``).
REFERENCE_POLICIES = {
    "random": random_policy,
    "hangar": hangar_policy,
    "myopic": myopic_policy,
    "centroid": centroid_policy,
}


def policy_episode_rates(key: jax.Array, env: MultiUAV, params: EnvParams, policy, num_episodes: int) -> jax.Array:
    """``[num_episodes]`` mean user rate (Mbps; = episode return / horizon) of ``policy`` from resets.

    Each episode runs exactly ``max_steps_in_episode`` steps (it never terminates earlier).
    """
    horizon = int(params.max_steps_in_episode)

    def episode(k):
        k_reset, k_run = jax.random.split(k)
        _, state = env.reset(k_reset, params)

        def body(s, kk):
            k_act, k_step = jax.random.split(kk)
            _, s2, reward, *_ = env.step_env(k_step, s, policy(k_act, s, params), params)
            return s2, reward

        _, rewards = jax.lax.scan(body, state, jax.random.split(k_run, horizon))
        return jnp.mean(rewards)

    return jax.vmap(episode)(jax.random.split(key, num_episodes))
