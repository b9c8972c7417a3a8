"""pybert.metrics against plain-Python definitions."""

import random

import pytest

from pybert.metrics import regression_metrics


def _ranks(values):
    ordered = sorted(values)
    return [sum(i + 1 for i, v in enumerate(ordered) if v == x) / ordered.count(x)
            for x in values]


def _pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    return cov / (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5


def test_regression_metrics_match_their_definitions():
    rng = random.Random(3)
    for n in (3, 17, 200):
        gold = [rng.choice([0.0, 0.5, 1.2, 2.0, 3.8, 5.0]) for _ in range(n)]  # ties
        pred = [g + rng.gauss(0, 1) for g in gold]
        pred[0] = pred[-1]  # a tie among the predictions too
        if len(set(gold)) == 1:
            gold[0] += 1.0
        got = regression_metrics(pred, gold)
        assert got["mean_squared_error"] == pytest.approx(
            sum((p - g) ** 2 for p, g in zip(pred, gold, strict=True)) / n, rel=1e-12)
        assert got["pearson"] == pytest.approx(_pearson(pred, gold), rel=1e-9)
        assert got["spearman"] == pytest.approx(_pearson(_ranks(pred), _ranks(gold)), rel=1e-9)
    # a monotone map keeps Spearman at 1 but not Pearson
    got = regression_metrics([1, 2, 3, 40], [1, 2, 3, 4])
    assert got["spearman"] == pytest.approx(1.0) and got["pearson"] < 0.9


def test_regression_metrics_edge_cases():
    # one side constant: the correlations are undefined (None), the error is not
    got = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert got == {"mean_squared_error": pytest.approx(2 / 3), "pearson": None,
                   "spearman": None}
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        regression_metrics([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="no predictions"):
        regression_metrics([], [])
    # constant values whose float mean is not exactly the value: still undefined
    for value in (0.1, 0.7, 3.3):
        got = regression_metrics([value] * 3, [1.0, 2.0, 3.0])
        assert got["pearson"] is None and got["spearman"] is None
    assert regression_metrics([1e-200, 2e-200, 3e-200], [1, 2, 3])["pearson"] == pytest.approx(1)
    with pytest.raises(ValueError, match="labels must be finite"):
        regression_metrics([1.0, 2.0], [1.0, float("inf")])
    # a diverged model: every metric undefined, the bad predictions counted
    assert regression_metrics([1.0, float("nan"), float("inf")], [1.0, 2.0, 3.0]) == {
        "mean_squared_error": None, "pearson": None, "spearman": None,
        "non_finite_predictions": 2}


def test_predict_summary_line_with_undefined_metrics():
    """pybert-predict's summary line when a diverged model's predictions are NaN: the
    figures read "undefined" and the bad predictions are counted (no format error)."""
    import subprocess
    import sys
    import tempfile

    code = ("from pybert.cli import predict as p; p._report({'examples': 3, 'errors': 0, "
            "'wall_seconds': 1.0, 'examples_per_second': 3.0, 'padding_share': 0.0, "
            "'output': 'o.tsv', 'mean_squared_error': None, 'pearson': None, "
            "'spearman': None, 'non_finite_predictions': 2, 'labelled': 3}, 1.0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), check=True)
    assert ("mean squared error undefined, pearson undefined, spearman undefined of 3, "
            "2 predictions not finite") in proc.stdout
