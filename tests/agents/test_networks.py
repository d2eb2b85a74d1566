"""Q-networks: shapes, input layouts, the MLP unchanged by the encoder change, bad names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtrl_jax as dt
from dtrl_jax.agents.networks import NETWORKS, build_network, make_obs_encoder


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("shape", [(7,), (5, 3)])
def test_every_network_maps_one_observation_to_q_values(name, shape):
    net = build_network(name, (8, 16), num_actions=4)
    x = jnp.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)
    params = net.init(jax.random.key(0), x)
    q = net.apply(params, x)
    assert q.shape == (4,)
    assert np.all(np.isfinite(np.asarray(q)))
    batched = jax.vmap(lambda o: net.apply(params, o))(jnp.stack([x, 2 * x]))
    assert batched.shape == (2, 4)


def test_mlp_flattens_inside_so_params_match_a_flat_input():
    net = build_network("mlp", (6,), 3)
    x = jnp.arange(6.0).reshape(2, 3)
    params = net.init(jax.random.key(0), x)
    np.testing.assert_array_equal(net.apply(params, x), net.apply(params, x.reshape(-1)))
    assert params["params"]["Dense_0"]["kernel"].shape == (6, 6)


def test_gru_reads_the_window_in_order_and_cnn_shares_filters_across_entities():
    gru = build_network("gru", (8,), 2)
    x = jax.random.normal(jax.random.key(1), (3, 4))
    p = gru.init(jax.random.key(0), x)
    assert not np.allclose(gru.apply(p, x), gru.apply(p, x[::-1]))  # order matters
    cnn = build_network("cnn", (5, 7), 2)
    pc = cnn.init(jax.random.key(0), jnp.zeros((10, 3)))
    assert pc["params"]["Conv_0"]["kernel"].shape == (1, 3, 5)  # one filter bank for all 10 entities


def test_encoder_keeps_array_shape_and_one_hot_encodes_indices():
    assert make_obs_encoder(None)(jnp.zeros((2, 3), jnp.int32)).shape == (2, 3)
    np.testing.assert_array_equal(make_obs_encoder(4)(jnp.int32(2)), [0, 0, 1, 0])


def test_unknown_architecture_raises_a_clear_error():
    with pytest.raises(ValueError, match="unknown network 'transformer'"):
        build_network("transformer", (8,), 2)
    with pytest.raises(ValueError, match="network"):
        dt.DQNConfig(network="transformer")
    for name in NETWORKS:
        assert dt.DQNConfig(network=name).network == name
