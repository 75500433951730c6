"""Shared fixtures for the scoring unit tests: a small synthetic credit table with messy cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "credit"


def synthetic_columns(rows: int = 1500, seed: int = 7) -> dict[str, np.ndarray]:
    """Risk rises with `utilisation` and `late_payments`, falls with `income`; cells are messy."""
    rng = np.random.default_rng(seed)
    utilisation = rng.uniform(0, 100, rows)
    income = rng.lognormal(10, 0.5, rows)
    late = rng.poisson(0.8, rows)
    region = rng.choice(["north", "south", "east"], rows)
    pay_1 = rng.integers(-1, 3, rows)
    pay_2 = np.clip(pay_1 + rng.integers(-1, 2, rows), -1, 3)
    logit = -2.0 + 0.03 * utilisation - 0.6 * (np.log(income) - 10) + 0.5 * late + 0.4 * pay_1 + 0.3 * pay_2
    logit += np.where(region == "south", 0.5, 0.0)
    bad = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    util_text = np.array([f"{u:.1f}%" for u in utilisation], dtype=object)
    util_text[rng.uniform(size=rows) < 0.05] = ""
    late_text = late.astype(object)
    late_text[rng.uniform(size=rows) < 0.03] = 98
    income_text = np.array([f"{v:,.0f}" for v in income], dtype=object)
    return {
        "ID": np.arange(1, rows + 1).astype(str).astype(object),
        "utilisation": util_text,
        "income": income_text,
        "late_payments": np.array([str(v) for v in late_text], dtype=object),
        "region": region.astype(object),
        "PAY_1": pay_1.astype(str).astype(object),
        "PAY_2": pay_2.astype(str).astype(object),
        "sex": rng.choice(["f", "m"], rows).astype(object),
        "bad": np.where(bad, "1", "0").astype(object),
    }


@pytest.fixture(scope="session")
def messy_columns() -> dict[str, np.ndarray]:
    return synthetic_columns()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


def require(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"public data set not found at {path} (see ../shared/data/credit/README.md)")
    return path
