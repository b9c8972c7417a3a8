"""The GPU check script (bench/gpu/check_attention.py) run on the CPU, so that a
broken harness shows up here and not in a device session (15 minutes each).

`--emulate` swaps the CUDA library for a float32 PyTorch stand-in: these tests
check the script (its checks, their failure detection, the timing rows), not
the kernels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu" / "check_attention.py"


@pytest.fixture(scope="module")
def ca(check_attention):
    return check_attention


def test_quick_checks_run_end_to_end(ca, tmp_path):
    out = tmp_path / "check.json"
    assert ca.main(["--emulate", "--quick", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["checks"]
    assert rows and all(r["ok"] for r in rows)
    names = "\n".join(r["name"] for r in rows)
    # every forward and backward variant is exercised, dropout included
    for v in range(1, ca.FWD_VARIANTS + 1):
        assert f"D64 bshd random v{v}/" in names, v
        assert f"fwd v{v} bwd v0 dropout" in names, v
    for v in range(1, ca.BWD_VARIANTS + 1):
        assert f"S300 bwd v{v} fully masked" in names, v
    assert sum(n.startswith("bad input:") for n in names.splitlines()) >= 2


class _WrongForward:
    """The stand-in with one forward variant off by 1% (a kernel bug)."""

    def __init__(self, ca, bad_variant):
        self._lib, self._bad = ca.EmulatedLib(), bad_variant

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def forward(self, *args, variant=0, **kwargs):
        out, lse = self._lib.forward(*args, variant=variant, **kwargs)
        return (out * 1.01 if variant == self._bad else out), lse


def test_checks_catch_a_wrong_variant(ca):
    checker = ca.Checker(_WrongForward(ca, bad_variant=8), torch.device("cpu"))
    checker.check_case("fp16", 2, 2, 131, 300, 64, variant=7)
    checker.check_case("fp16", 2, 2, 131, 300, 64, variant=8)
    checker.check_dropout("fp16", 64, fwd_variant=8, S=100)
    assert [r["ok"] for r in checker.rows] == [True, False, False]


def test_timing_rows(ca, monkeypatch):
    calls = []

    def stand_in_timer(fn, reps, warmup=10):  # runs the timed function, no CUDA events
        fn(0)
        fn(1)
        calls.append(fn)
        return float(len(calls))

    monkeypatch.setattr(ca, "_median_ms", stand_in_timer)
    rows = ca.run_timing(ca.EmulatedLib(), torch.device("cpu"), ["fp16"], [(2, 40)], reps=2)
    assert [r["mask"] for r in rows] == ["full", "padded"]
    for r in rows:
        for key in ("ours_fwd", "sdpa_fwd_mask", "ours_fwdbwd", "ours_fwdbwd_best_fwd",
                    "sdpa_fwdbwd_mask", "ours_bwd", "sdpa_bwd_mask"):
            assert math.isfinite(r[key]), key
        assert r["ratio_bwd_vs_sdpa_mask"] == r["sdpa_bwd_mask"] / r["ours_bwd"]
        assert all(f"ours_fwd_v{v}" in r for v in range(1, ca.FWD_VARIANTS + 1))
        assert all(f"ours_bwd_bv{v}" in r for v in range(1, ca.BWD_VARIANTS + 1))
    ca.print_table(rows)
    summary = ca.variant_summary(rows)
    fwd = {s["variant"]: s for s in summary if s["kind"] == "fwd"}
    assert sorted(fwd) == list(range(1, ca.FWD_VARIANTS + 1))
    assert {s["kind"] for s in summary} == {"fwd", "fwd+bwd", "bwd"}
    # the stand-in timer returns its call count: later-timed variants are slower
    for r in rows:
        assert r["ours_fwd_v1"] < r["ours_fwd_v2"]
    assert fwd[1]["fastest_rows"] == 2 and fwd[2]["fastest_rows"] == 0
    want = math.exp(sum(math.log(r["ours_fwd_v3"] / r["ours_fwd"]) for r in rows) / 2)
    assert fwd[3]["geomean_vs_default"] == pytest.approx(want)
    worst = min(r["sdpa_fwd_mask"] / r["ours_fwd_v3"] for r in rows)
    assert fwd[3]["worst_vs_sdpa_mask"] == pytest.approx(worst)
    ca.print_variant_summary(summary)


def test_skipped_variants_are_neither_checked_nor_timed(ca, monkeypatch):
    monkeypatch.setattr(ca, "SKIP_FWD", set(ca.WGMMA_FWD))
    monkeypatch.setattr(ca, "SKIP_BWD", {5})
    monkeypatch.setattr(ca, "_median_ms", lambda fn, reps, warmup=10: (fn(0), 1.0)[1])
    assert ca.fwd_variants() == list(range(1, 10)) and ca.bwd_variants(2) == [2, 3, 4]
    (row,) = ca.run_timing(ca.EmulatedLib(), torch.device("cpu"), ["fp16"], [(2, 40)], reps=2,
                           masks=("full",))
    assert "ours_fwd_v9" in row and "ours_fwd_v10" not in row
    assert "ours_bwd_bv4" in row and "ours_bwd_bv5" not in row
    assert row["best_fwd_variant"] <= 9 and row["best_bwd_variant"] <= 4


def test_skip_variants_option_is_parsed_and_checked(ca, monkeypatch):
    monkeypatch.setattr(ca, "SKIP_FWD", set())
    monkeypatch.setattr(ca, "SKIP_BWD", set())
    assert ca.main(["--emulate", "--smoke-wgmma", "--skip-variants", "fwd:10,11;bwd:5"]) == 0
    assert ca.SKIP_FWD == {10, 11} and ca.SKIP_BWD == {5}
    with pytest.raises(SystemExit, match="--skip-variants"):
        ca.main(["--emulate", "--skip-variants", "fwd=10"])


def test_wgmma_smoke_test_fails_on_a_wrong_kernel(ca, monkeypatch):
    stand_in = _WrongForward(ca, bad_variant=11)
    monkeypatch.setattr(ca, "EmulatedLib", lambda: stand_in)
    assert ca.main(["--emulate", "--smoke-wgmma"]) == 1
