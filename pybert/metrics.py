"""Evaluation metrics on NumPy arrays (no TensorFlow): what GLUE reports for a
regression task such as STS-B, beside the seed's mean squared error."""

from __future__ import annotations

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (as Spearman's rho
    is defined for ties)."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # first index of each run of equal values, and the run lengths
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    counts = np.diff(np.r_[starts, len(x)])
    mean_rank = starts + (counts + 1) / 2.0  # ranks starts+1 .. starts+counts
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat(mean_rank, counts)
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # a constant side (its mean need not be exact)
        return None
    a, b = a - a.mean(), b - b.mean()
    a, b = a / np.abs(a).max(), b / np.abs(b).max()  # no underflow in the squares
    denom = np.sqrt((a * a).sum()) * np.sqrt((b * b).sum())
    return float(np.clip((a * b).sum() / denom, -1.0, 1.0)) if denom > 0 else None


def regression_metrics(predictions, labels) -> dict:
    """mean_squared_error (the seed's eval metric), pearson and spearman (GLUE's for
    STS-B; None where one side is constant, as the correlation is undefined) of two
    equal-length 1-D sequences. Labels must be finite; predictions that are not (a
    diverged model) make every metric None, with their count in
    non_finite_predictions."""
    p = np.asarray(predictions, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} predictions but {len(y)} labels")
    if not len(p):
        raise ValueError("no predictions to score")
    if not np.isfinite(y).all():
        raise ValueError("labels must be finite numbers")
    bad = int((~np.isfinite(p)).sum())
    if bad:
        return {"mean_squared_error": None, "pearson": None, "spearman": None,
                "non_finite_predictions": bad}
    return {"mean_squared_error": float(np.mean((p - y) ** 2)),
            "pearson": _pearson(p, y), "spearman": _pearson(_ranks(p), _ranks(y))}
