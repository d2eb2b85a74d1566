"""Validation helpers shared by configs and environment parameters.

Every public config and every ``EnvParams`` is checked where it is built, before any tracing, so
that a typo surfaces as one ``ValueError`` naming the field, the value and what is allowed, rather
than as an XLA error or a silent NaN. Values that are not concrete (tracers inside ``vmap``/``jit``,
or placeholder leaves jax uses while rebuilding pytrees) are skipped: they were checked when the
concrete config was built, and a traced sweep must not force a recompilation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

_NUMBER_TYPES = (int, float, np.integer, np.floating, np.bool_, bool)


def is_concrete(value: Any) -> bool:
    """True when ``value`` is a plain Python/NumPy number or a concrete (non-traced) array."""
    if isinstance(value, jax.core.Tracer):
        return False
    if isinstance(value, _NUMBER_TYPES):
        return True
    if isinstance(value, (np.ndarray, jax.Array)):
        try:
            np.asarray(value)
        except Exception:  # noqa: BLE001 - anything not materialisable is not concrete
            return False
        return True
    return False


def _describe(low, high, low_open, high_open, integer) -> str:
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        return f"{kind} in {lb}{low}, {high}{hb}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high}"
    return f"a finite {kind}"


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise ``ValueError`` unless every element of ``value`` lies in the given range.

    Args:
      owner: the config or params class name, used in the message (e.g. ``"DQNConfig"``).
      name: the field name.
      value: a scalar or array; skipped when not concrete (see module docstring).
      low, high: inclusive bounds unless ``low_open``/``high_open``.
      integer: require integral values (Python ``bool`` is rejected).
    """
    if integer and isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}.{name}={value!r}: expected an integer, got a bool")
    if isinstance(value, (str, list, tuple, dict)) or value is None:
        raise TypeError(f"{owner}.{name}={value!r}: expected a number, got {type(value).__name__}")
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    allowed = _describe(low, high, low_open, high_open, integer)
    if arr.size == 0:
        raise ValueError(f"{owner}.{name}={value!r} is empty; expected {allowed}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{owner}.{name}={value!r}: expected {allowed}, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}.{name}={value!r} is not finite; expected {allowed}")
    if integer and not np.all(np.equal(np.floor(arr), arr)):
        raise ValueError(f"{owner}.{name}={value!r}; expected {allowed}")
    bad = np.zeros(arr.shape, bool)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if np.any(bad):
        shown = value if arr.ndim == 0 else f"{arr.tolist()!r}"
        raise ValueError(f"{owner}.{name}={shown} is out of range; expected {allowed}")


def check_choice(owner: str, name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{owner}.{name}={value!r} is not allowed; expected one of {list(choices)}")


def check_positive_int(owner: str, name: str, value: Any, *, minimum: int = 1) -> None:
    """Static (shape) integers must be real Python/NumPy integers, never traced."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{owner}.{name}={value!r}: expected a Python int >= {minimum} "
            f"(it fixes array shapes, so it cannot be a float or a traced value)"
        )
    if value < minimum:
        raise ValueError(f"{owner}.{name}={value} is out of range; expected an integer >= {minimum}")


def finite_or_raise(owner: str, name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{name}={value!r} is not finite")


def check_windows(owner: str, name: str, windows: Any, parts: tuple[str, ...]) -> None:
    """``windows`` is a tuple of tuples ``len(parts)`` long whose first two entries are integer steps
    ``0 <= start < end`` (the other entries are the caller's to check)."""
    shape = "(" + ", ".join(parts) + ")"
    if not isinstance(windows, tuple):
        raise TypeError(f"{owner}.{name}={windows!r}: expected a tuple of {shape}")
    for window in windows:
        if not (isinstance(window, tuple) and len(window) == len(parts)):
            raise ValueError(f"{owner}.{name} entry {window!r}: expected {shape}")
        check_positive_int(owner, f"{name} start", window[0], minimum=0)
        check_positive_int(owner, f"{name} end", window[1], minimum=window[0] + 1)
