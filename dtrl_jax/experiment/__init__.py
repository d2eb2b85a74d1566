"""Experiments around the core loop: run folders with checkpoints (``runs``, ``records``), the
``dtrl`` command (``cli``), progress output (``progress``), trackers (``tracking``), plots
(``plotting``), pictures of episodes (``render``) and the demo (``demo``).

Nothing here is imported by the core (``dtrl_jax.train``, ``agents``, ``envs``, ``twin``); this
package builds on it. Kept free of imports so that ``dtrl --help`` and ``dtrl plot`` start without JAX.
"""
