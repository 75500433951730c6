"""Counter-based random draws keyed by (seed, stream, consumer, day), vectorised over consumers.

A consumer's draw for a day does not depend on who else is in the population, in what order they are
processed, or on what was drawn before: it is a hash of the key. That is what makes a run reproducible
for a seed and a resumed run equal to an uninterrupted one — there is no generator state to save.
The hash is SplitMix64's finaliser applied along the key (a strong 64-bit mixer; the draws pass as
uniform for simulation, not for cryptography).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_2_POW_M53 = 2.0**-53


def _mix(x: U64) -> U64:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def keyed(seed: int, stream: int, consumers: npt.ArrayLike, day: int = 0) -> U64:
    """64 random bits per consumer for (seed, stream, day)."""
    ids = np.asarray(consumers, dtype=np.uint64)
    h = np.full(ids.shape, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for part in (np.uint64(stream & 0xFFFFFFFF), np.uint64(day & 0xFFFFFFFF)):
        h = _mix(h + _GOLDEN + np.full(ids.shape, part, dtype=np.uint64))
    return _mix(h + _GOLDEN + ids)


def uniform(seed: int, stream: int, consumers: npt.ArrayLike, day: int = 0) -> F64:
    """Uniform on [0, 1) per consumer."""
    return (keyed(seed, stream, consumers, day) >> np.uint64(11)).astype(np.float64) * _2_POW_M53


def normal(seed: int, stream: int, consumers: npt.ArrayLike, day: int = 0) -> F64:
    """Standard normal per consumer (Box–Muller on two keyed uniforms: streams `stream` and `stream` + 1M)."""
    u1 = uniform(seed, stream, consumers, day)
    u2 = uniform(seed, stream + 1_000_000, consumers, day)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def poisson(seed: int, stream: int, consumers: npt.ArrayLike, rate: F64, day: int = 0) -> npt.NDArray[np.int64]:
    """Poisson counts with per-consumer `rate` (small rates: inverse CDF, at most 30 per draw)."""
    u = uniform(seed, stream, consumers, day)
    k = np.zeros(u.shape, dtype=np.int64)
    p = np.exp(-rate)
    cdf = p.copy()
    for n in range(1, 31):
        more = u >= cdf
        if not more.any():
            break
        k += more
        p = p * rate / n
        cdf = cdf + p
    return k


def choice(seed: int, stream: int, consumers: npt.ArrayLike, weights: F64, day: int = 0) -> npt.NDArray[np.int64]:
    """An index per consumer drawn with per-consumer weights (rows of `weights`, each summing to > 0)."""
    u = uniform(seed, stream, consumers, day)
    cumulative = np.cumsum(weights, axis=1)
    cumulative /= cumulative[:, -1:]
    picked = np.minimum((cumulative < u[:, None]).sum(axis=1), weights.shape[1] - 1)
    return np.asarray(picked, dtype=np.int64)
