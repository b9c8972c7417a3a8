"""Correctness and speed of the CUDA fused attention kernels against PyTorch.

Run through check_attention.sh (it builds the harness library first). Needs
PyTorch with CUDA; TensorFlow is not needed. Without a GPU: `--emu --lib
build/emu/libpybert_attention_emu.so` (built by build_emu.sh) runs the checks
on the real kernel code under the CPU emulation of CUDA (csrc/attention/emu);
`--emulate` runs the harness logic with a PyTorch stand-in for the kernels (to
test this script; it checks nothing about the kernels).

Correctness: random inputs and random padding masks (prefix masks and masks
with holes), several batch sizes, heads, head dims and sequence lengths; the
reference is float64 math on the same (rounded) inputs; a kernel passes when
its relative error ||x - ref|| / ||ref|| is at most 2x that of PyTorch's own
SDPA in the same dtype against the same reference, or under a floor far below
the dtype's rounding (float32 1e-6, fp16/bf16 1e-5), for the output and for
dq, dk, dv; NaN never; every output element written (outputs are poisoned
with NaN first).

Timing: CUDA events, median of >= 50 runs after warm-up, rotating input sets,
against SDPA given the same boolean padding mask (and SDPA without a mask).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

FWD_VARIANTS = 13  # forward kernel variants (csrc/attention/launch_impl.cuh)
BWD_VARIANTS = 5  # backward kernel variants
WGMMA_FWD, WGMMA_BWD = (10, 11, 12, 13), (5,)  # the Hopper (sm_90a) ones
SKIP_FWD, SKIP_BWD = set(), set()  # left out of this run (--skip-variants)


def fwd_variants():
    return [v for v in range(1, FWD_VARIANTS + 1) if v not in SKIP_FWD]


def bwd_variants(first=1):
    return [v for v in range(first, BWD_VARIANTS + 1) if v not in SKIP_BWD]
DTYPES = {"fp32": (0, torch.float32), "fp16": (1, torch.float16), "bf16": (2, torch.bfloat16)}


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else None


def _strides(*tensors):
    vals = []
    for t in tensors:
        assert t.stride(3) == 1, "head_dim must be contiguous"
        vals += [t.stride(0), t.stride(1), t.stride(2)]
    return (ctypes.c_longlong * len(vals))(*vals)


class CudaLib:
    """The kernels through the extern "C" harness API (csrc/attention/attention_capi.cu)."""

    def __init__(self, path, emulated=False):
        self.emulated = emulated  # the CPU emulation build (bench/gpu/build_emu.sh): host memory
        lib = ctypes.CDLL(path)
        vp, i, f, u64, ll = (
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_float,
            ctypes.c_ulonglong,
            ctypes.c_longlong,
        )
        lib.pybert_attn_forward.argtypes = (
            [i] * 6 + [vp] * 6 + [vp, f, f, u64, u64, i, vp, ctypes.c_char_p, i]
        )
        lib.pybert_attn_forward.restype = i
        lib.pybert_attn_backward_workspace_bytes.argtypes = [i] * 6
        lib.pybert_attn_backward_workspace_bytes.restype = ll
        lib.pybert_attn_backward.argtypes = (
            [i] * 6 + [vp] * 11 + [vp, f, f, u64, u64, i, vp, ctypes.c_char_p, i]
        )
        lib.pybert_attn_backward.restype = i
        lib.pybert_attn_dropout_mask.argtypes = [
            i,
            i,
            i,
            i,
            f,
            u64,
            u64,
            vp,
            vp,
            ctypes.c_char_p,
            i,
        ]
        lib.pybert_attn_dropout_mask.restype = i
        self.has_cpu = hasattr(lib, "pybert_attn_cpu_forward")
        if self.has_cpu:
            lib.pybert_attn_cpu_forward.argtypes = (
                [i] * 6 + [vp] * 6 + [vp, f, f, u64, u64, i, ctypes.c_char_p, i]
            )
            lib.pybert_attn_cpu_forward.restype = i
            lib.pybert_attn_cpu_backward.argtypes = (
                [i] * 6 + [vp] * 10 + [vp, f, f, u64, u64, i, ctypes.c_char_p, i]
            )
            lib.pybert_attn_cpu_backward.restype = i
        self.lib = lib

    def set_emu_mode(self, mode):
        """mode: "forward|reverse,early|late,warps|lockstep" (the --emu argument)."""
        parts = mode.split(",")
        allowed = (("forward", "reverse"), ("early", "late"), ("warps", "lockstep"))
        if len(parts) != 3 or any(x not in a for x, a in zip(parts, allowed, strict=True)):
            raise ValueError(
                f"emulation mode: want forward|reverse,early|late,warps|lockstep, got {mode!r}"
            )
        self.lib.pybert_emu_set_mode(
            parts[0] == "reverse", parts[1] == "late", parts[2] == "lockstep"
        )

    def _stream(self):
        if self.emulated:
            return None
        return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)

    def forward(
        self,
        q,
        k,
        v,
        mask,
        scale,
        rate=0.0,
        seed=0,
        offset=0,
        variant=0,
        out=None,
        lse=None,
        dtype_code=None,
        head_dim=None,
    ):
        B, Sq, H, D = q.shape
        Sk = k.shape[1]
        code = dtype_code if dtype_code is not None else _code(q.dtype)
        out = torch.full_like(q, float("nan")) if out is None else out
        lse = (
            torch.full((B, H, Sq), float("nan"), device=q.device, dtype=torch.float32)
            if lse is None
            else lse
        )
        err = ctypes.create_string_buffer(1024)
        rc = self.lib.pybert_attn_forward(
            code,
            B,
            H,
            Sq,
            Sk,
            head_dim or D,
            _ptr(q),
            _ptr(k),
            _ptr(v),
            _ptr(mask),
            _ptr(out),
            _ptr(lse),
            _strides(q, k, v, out),
            scale,
            rate,
            seed,
            offset,
            variant,
            self._stream(),
            err,
            1024,
        )
        if rc:
            raise ValueError(err.value.decode())
        return out, lse

    def workspace(self, q, k):
        B, Sq, H, D = q.shape
        n = self.lib.pybert_attn_backward_workspace_bytes(_code(q.dtype), B, H, Sq, k.shape[1], D)
        return torch.empty(n, dtype=torch.uint8, device=q.device)

    def backward(
        self,
        q,
        k,
        v,
        mask,
        out,
        lse,
        dout,
        scale,
        rate=0.0,
        seed=0,
        offset=0,
        workspace=None,
        grads=None,
        variant=0,
    ):
        B, Sq, H, D = q.shape
        Sk = k.shape[1]
        if grads is None:
            grads = tuple(torch.full_like(x, float("nan")) for x in (q, k, v))
        dq, dk, dv = grads
        ws = self.workspace(q, k) if workspace is None else workspace
        err = ctypes.create_string_buffer(1024)
        rc = self.lib.pybert_attn_backward(
            _code(q.dtype),
            B,
            H,
            Sq,
            Sk,
            D,
            _ptr(q),
            _ptr(k),
            _ptr(v),
            _ptr(mask),
            _ptr(out),
            _ptr(lse),
            _ptr(dout),
            _ptr(dq),
            _ptr(dk),
            _ptr(dv),
            _ptr(ws),
            _strides(q, k, v, out, dout, dq, dk, dv),
            scale,
            rate,
            seed,
            offset,
            variant,
            self._stream(),
            err,
            1024,
        )
        if rc:
            raise ValueError(err.value.decode())
        return dq, dk, dv

    def cpu_attention(self, q, k, v, mask, dout, scale, rate=0.0, seed=0, offset=0, threads=4):
        """The CPU kernels (float32) on host copies: (out, lse, dq, dk, dv)."""
        q, k, v, dout = (x.detach().float().cpu().contiguous() for x in (q, k, v, dout))
        mask = mask.cpu().contiguous() if mask is not None else None
        B, Sq, H, D = q.shape
        Sk = k.shape[1]
        out = torch.full_like(q, float("nan"))
        lse = torch.full((B, H, Sq), float("nan"), dtype=torch.float32)
        err = ctypes.create_string_buffer(1024)
        rc = self.lib.pybert_attn_cpu_forward(
            0, B, H, Sq, Sk, D, _ptr(q), _ptr(k), _ptr(v), _ptr(mask), _ptr(out), _ptr(lse),
            _strides(q, k, v, out), scale, rate, seed, offset, threads, err, 1024,
        )  # fmt: skip
        if rc:
            raise ValueError(err.value.decode())
        dq, dk, dv = (torch.full_like(x, float("nan")) for x in (q, k, v))
        rc = self.lib.pybert_attn_cpu_backward(
            0, B, H, Sq, Sk, D, _ptr(q), _ptr(k), _ptr(v), _ptr(mask), _ptr(out), _ptr(lse),
            _ptr(dout), _ptr(dq), _ptr(dk), _ptr(dv),
            _strides(q, k, v, out, dout, dq, dk, dv), scale, rate, seed, offset, threads,
            err, 1024,
        )  # fmt: skip
        if rc:
            raise ValueError(err.value.decode())
        return out, lse, dq, dk, dv

    def dropout_mask(self, B, H, Sq, Sk, rate, seed, offset, device):
        keep = torch.empty((B, H, Sq, Sk), dtype=torch.uint8, device=device)
        err = ctypes.create_string_buffer(1024)
        rc = self.lib.pybert_attn_dropout_mask(
            B, H, Sq, Sk, rate, seed, offset, _ptr(keep), self._stream(), err, 1024
        )
        if rc:
            raise ValueError(err.value.decode())
        return keep


class EmulatedLib:
    """CPU stand-in with the same API (float32 math), for testing this script."""

    def forward(
        self,
        q,
        k,
        v,
        mask,
        scale,
        rate=0.0,
        seed=0,
        offset=0,
        variant=0,
        out=None,
        lse=None,
        dtype_code=None,
        head_dim=None,
    ):
        hd = head_dim or q.shape[3]
        if hd not in (32, 64, 128):
            raise ValueError(f"head_dim must be 32, 64 or 128, got {hd}")
        if dtype_code is not None and dtype_code not in (0, 1, 2):
            raise ValueError(f"dtype: unsupported value {dtype_code}")
        keep = self.dropout_mask(
            q.shape[0], q.shape[2], q.shape[1], k.shape[1], rate, seed, offset, q.device
        )
        o, lse_ = _reference(
            q.float(),
            k.float(),
            v.float(),
            mask,
            scale,
            keep if rate > 0 else None,
            rate,
            want_lse=True,
        )
        return o.to(q.dtype), lse_.float()

    def workspace(self, q, k):
        return None

    def backward(
        self,
        q,
        k,
        v,
        mask,
        out,
        lse,
        dout,
        scale,
        rate=0.0,
        seed=0,
        offset=0,
        workspace=None,
        grads=None,
        variant=0,
    ):
        keep = self.dropout_mask(
            q.shape[0], q.shape[2], q.shape[1], k.shape[1], rate, seed, offset, q.device
        )
        _, g = _reference_grads(
            q.float(),
            k.float(),
            v.float(),
            mask,
            scale,
            dout.float(),
            keep if rate > 0 else None,
            rate,
        )
        return tuple(x.to(q.dtype) for x in g)

    has_cpu = True

    def cpu_attention(self, q, k, v, mask, dout, scale, rate=0.0, seed=0, offset=0, threads=4):
        q, k, v, dout = (x.float().cpu() for x in (q, k, v, dout))
        mask = mask.cpu() if mask is not None else None
        out, lse = self.forward(q, k, v, mask, scale, rate, seed, offset)
        return (out, lse, *self.backward(q, k, v, mask, out, lse, dout, scale, rate, seed, offset))

    def dropout_mask(self, B, H, Sq, Sk, rate, seed, offset, device):
        gen = torch.Generator().manual_seed(seed * 1000003 + offset)
        return (torch.rand((B, H, Sq, Sk), generator=gen) >= rate).to(torch.uint8).to(device)


def _code(dtype):
    for code, dt in DTYPES.values():
        if dt == dtype:
            return code
    raise ValueError(dtype)


def _reference(q, k, v, mask, scale, keep=None, rate=0.0, want_lse=False):
    """float64 math: q, k, v [B, S, H, D] (any float dtype), mask [B, Sk] int32 or None."""
    qd, kd, vd = (x.double().transpose(1, 2) for x in (q, k, v))
    s = (qd @ kd.transpose(-1, -2)) * scale
    if mask is not None:
        kept = mask.bool()[:, None, None, :]
        s = s.masked_fill(~kept, -1e30)
        any_kept = mask.bool().any(dim=1)[:, None, None, None]
    else:
        any_kept = None
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1)
    if any_kept is not None:
        p = p * any_kept
        lse = torch.where(any_kept[..., 0], lse, torch.full_like(lse, math.inf))
    if keep is not None:
        p = p * keep.double() / (1.0 - rate)
    o = (p @ vd).transpose(1, 2)
    return (o, lse) if want_lse else o


def _reference_grads(q, k, v, mask, scale, dout, keep=None, rate=0.0):
    leaves = [x.detach().double().requires_grad_(True) for x in (q, k, v)]
    o = _reference(*leaves, mask, scale, keep, rate)
    o.backward(dout.double())
    return o.detach(), tuple(x.grad for x in leaves)


def _sdpa(q, k, v, mask, scale):
    """PyTorch SDPA on [B, S, H, D] tensors with a boolean [B, 1, 1, Sk] padding mask."""
    am = mask.bool()[:, None, None, :] if mask is not None else None
    o = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=am, scale=scale
    )
    return o.transpose(1, 2)


def _sdpa_grads(q, k, v, mask, scale, dout):
    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v)]
    o = _sdpa(*leaves, mask, scale)
    o.backward(dout)
    return o.detach(), tuple(x.grad for x in leaves)


def rel_err(x, ref):
    x = x.double()
    if not torch.isfinite(x).all():
        return math.inf
    den = ref.norm().item()
    return (x - ref).norm().item() / (den if den > 0 else 1.0)


def random_mask(B, Sk, device, gen, holes_batch=None):
    lengths = torch.randint(1, Sk + 1, (B,), generator=gen)
    m = (torch.arange(Sk)[None, :] < lengths[:, None]).to(torch.int32)
    if holes_batch is not None and B > holes_batch:
        row = (torch.rand(Sk, generator=gen) < 0.7).to(torch.int32)
        row[torch.randint(0, Sk, (1,), generator=gen)] = 1
        m[holes_batch] = row
    return m.to(device)


class Checker:
    def __init__(self, lib, device):
        self.lib, self.device = lib, device
        self.rows, self.failures = [], []
        self.gen = torch.Generator().manual_seed(1234)

    def randn(self, shape, dtype):
        return torch.randn(shape, generator=self.gen).to(dtype).to(self.device)

    def record(self, name, ok, **info):
        self.rows.append(dict(name=name, ok=bool(ok), **info))
        if not ok:
            self.failures.append(name)
            print(f"FAIL {name}: {info}")

    def tolerance(self, dtype, sdpa_err):
        # floors: where SDPA is exact (e.g. one key: dq = dk = 0, which PyTorch's
        # CPU SDPA hits to the bit), errors far below the dtype's own rounding
        # (fp16 ulp/2 = 4.9e-4, bf16 3.9e-3) are not failures
        return max(2 * sdpa_err, 1e-6 if dtype == torch.float32 else 1e-5)

    def check_case(
        self,
        dtype_name,
        B,
        H,
        Sq,
        Sk,
        D,
        layout="bshd",
        variant=0,
        mask_kind="random",
        bwd_variant=0,
    ):
        dtype = DTYPES[dtype_name][1]
        name = f"{dtype_name} B{B} H{H} Sq{Sq} Sk{Sk} D{D} {layout} {mask_kind}"
        name += f" v{variant}/{bwd_variant}"
        if layout == "fused_qkv":  # q, k, v as strided views of one [B, S, 3, H, D] tensor
            assert Sq == Sk
            qkv = self.randn((B, Sq, 3, H, D), dtype)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        else:
            q, k, v = (self.randn((B, s, H, D), dtype) for s in (Sq, Sk, Sk))
        dout = self.randn((B, Sq, H, D), dtype)
        if mask_kind == "none":
            mask = None
        elif mask_kind == "ones":
            mask = torch.ones((B, Sk), dtype=torch.int32, device=self.device)
        else:
            mask = random_mask(B, Sk, self.device, self.gen, holes_batch=1 if B >= 3 else None)
        scale = 1.0 / math.sqrt(D)
        out, lse = self.lib.forward(q, k, v, mask, scale, variant=variant)
        ref_o, ref_lse = _reference(q, k, v, mask, scale, want_lse=True)
        ref_o2, ref_g = _reference_grads(q, k, v, mask, scale, dout)
        s_o, s_g = _sdpa_grads(q, k, v, mask, scale, dout)
        dq, dk, dv = self.lib.backward(q, k, v, mask, out, lse, dout, scale, variant=bwd_variant)
        errs = {"out": (rel_err(out, ref_o), rel_err(s_o, ref_o))}
        for nm, ours, sd, ref in zip(("dq", "dk", "dv"), (dq, dk, dv), s_g, ref_g, strict=True):
            errs[nm] = (rel_err(ours, ref), rel_err(sd, ref))
        lse_err = (lse.double() - ref_lse).abs().max().item()
        ok = all(o <= self.tolerance(dtype, s) for o, s in errs.values()) and lse_err < 1e-2
        self.record(
            name,
            ok,
            errors={k_: {"ours": o, "sdpa": s} for k_, (o, s) in errs.items()},
            lse_max_abs=lse_err,
        )

    def check_fully_masked(self, dtype_name, D, S=77, bwd_variant=0):
        dtype = DTYPES[dtype_name][1]
        B, H = 3, 2
        q, k, v, dout = (self.randn((B, S, H, D), dtype) for _ in range(4))
        mask = random_mask(B, S, self.device, self.gen)
        mask[1] = 0
        scale = 1.0 / math.sqrt(D)
        out, lse = self.lib.forward(q, k, v, mask, scale)
        dq, dk, dv = self.lib.backward(q, k, v, mask, out, lse, dout, scale, variant=bwd_variant)
        ref_o, ref_g = _reference_grads(q, k, v, mask, scale, dout)
        finite = all(torch.isfinite(x).all().item() for x in (out, dq, dk, dv))
        zeros = all((x[1] == 0).all().item() for x in (out, dq, dk, dv)) and bool(
            torch.isinf(lse[1]).all()
        )
        errs = [rel_err(x, r) for x, r in zip((out, dq, dk, dv), (ref_o,) + ref_g, strict=True)]
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        self.record(
            f"{dtype_name} D{D} S{S} bwd v{bwd_variant} fully masked batch row -> zeros",
            finite and zeros and max(errs) < tol,
            errors=errs,
        )

    def check_no_queries(self, dtype_name, D, Sk=50):
        """seq_q = 0: dK and dV are zeros (the outputs start as NaN)."""
        dtype = DTYPES[dtype_name][1]
        B, H = 2, 3
        q, dout = (self.randn((B, 0, H, D), dtype) for _ in range(2))
        k, v = (self.randn((B, Sk, H, D), dtype) for _ in range(2))
        mask = random_mask(B, Sk, self.device, self.gen)
        out, lse = self.lib.forward(q, k, v, mask, 0.125)
        dq, dk, dv = self.lib.backward(q, k, v, mask, out, lse, dout, 0.125)
        ok = out.shape == q.shape and dq.shape == q.shape and all(
            bool((x == 0).all()) for x in (dk, dv))
        self.record(f"{dtype_name} D{D} seq_q 0, seq_k {Sk} -> dK = dV = 0", ok)

    def padded_inputs(self, dtype_name, D, B=2, H=3, S=129):
        """q, k, v, dout [B, S, H, D] and a padding mask of lengths in [S/2, S]."""
        dtype = DTYPES[dtype_name][1]
        q, k, v, dout = (self.randn((B, S, H, D), dtype) for _ in range(4))
        lengths = torch.randint(S // 2, S + 1, (B,), generator=self.gen)
        mask = (torch.arange(S)[None, :] < lengths[:, None]).to(torch.int32).to(self.device)
        return dtype, q, k, v, dout, mask, 1.0 / math.sqrt(D)

    def check_dropout(self, dtype_name, D, rate=0.1, bwd_variant=0, S=129, fwd_variant=0):
        dtype, q, k, v, dout, mask, scale = self.padded_inputs(dtype_name, D, S=S)
        B, S, H, _ = q.shape
        seed, offset = 20261126, 7
        keep = self.lib.dropout_mask(B, H, S, S, rate, seed, offset, self.device)
        out, lse = self.lib.forward(q, k, v, mask, scale, rate, seed, offset, variant=fwd_variant)
        out2, _ = self.lib.forward(q, k, v, mask, scale, rate, seed, offset, variant=fwd_variant)
        dq, dk, dv = self.lib.backward(
            q, k, v, mask, out, lse, dout, scale, rate, seed, offset, variant=bwd_variant
        )
        ref_o, ref_g = _reference_grads(q, k, v, mask, scale, dout, keep, rate)
        # Yardstick: the larger of SDPA's error on the same inputs without dropout
        # and the error of rounding the exact (dropout) result to the dtype.
        nd_ref_o, nd_ref_g = _reference_grads(q, k, v, mask, scale, dout)
        s_o, s_g = _sdpa_grads(q, k, v, mask, scale, dout)
        errs = {
            "out": (
                rel_err(out, ref_o),
                max(rel_err(s_o, nd_ref_o), rel_err(ref_o.to(dtype), ref_o)),
            )
        }
        for nm, ours, sd, ref, ndref in zip(
            ("dq", "dk", "dv"), (dq, dk, dv), s_g, ref_g, nd_ref_g, strict=True
        ):
            errs[nm] = (rel_err(ours, ref), max(rel_err(sd, ndref), rel_err(ref.to(dtype), ref)))
        ok = all(o <= self.tolerance(dtype, s) for o, s in errs.values()) and torch.equal(out, out2)
        self.record(
            f"{dtype_name} D{D} S{S} fwd v{fwd_variant} bwd v{bwd_variant} dropout {rate}: "
            "fwd/bwd use one mask",
            ok,
            errors={k_: {"ours": o, "yardstick": s} for k_, (o, s) in errs.items()},
            deterministic=torch.equal(out, out2),
        )

    def check_cpu_agrees(self, dtype_name, D, rate=0.1):
        """The CPU kernels (attention_cpu.cc) and the GPU kernels on the same
        float32 inputs, same seed and offset: the same Philox dropout mask and the
        same results (a different mask would differ by tens of percent)."""
        dtype, q, k, v, dout, mask, scale = self.padded_inputs(dtype_name, D)
        seed, offset = 987654321, 3
        out, lse = self.lib.forward(q, k, v, mask, scale, rate, seed, offset)
        grads = self.lib.backward(q, k, v, mask, out, lse, dout, scale, rate, seed, offset)
        cpu = self.lib.cpu_attention(q, k, v, mask, dout, scale, rate, seed, offset)
        names = ("out", "lse", "dq", "dk", "dv")
        gpu = (out, lse, *grads)
        kept = torch.isfinite(cpu[1])
        errs = {}
        for nm, g, c in zip(names, gpu, cpu, strict=True):
            g, c = g.detach().double().cpu(), c.double()
            if nm == "lse":
                g, c = g[kept], c[kept]
            errs[nm] = rel_err(g, c)
        tol = 1e-5 if dtype == torch.float32 else (4e-3 if dtype == torch.float16 else 3e-2)
        self.record(
            f"{dtype_name} D{D} dropout {rate}: CPU kernels agree with GPU kernels",
            max(errs.values()) <= tol,
            errors_vs_cpu=errs,
            tol=tol,
        )

    def check_keep_rate(self, rate=0.1):
        keep = self.lib.dropout_mask(4, 12, 512, 512, rate, 42, 0, self.device)
        share = keep.double().mean().item()
        other = self.lib.dropout_mask(4, 12, 512, 512, rate, 42, 1, self.device)
        same = self.lib.dropout_mask(4, 12, 512, 512, rate, 42, 0, self.device)
        agree = (keep == other).double().mean().item()
        ok = abs(share - (1 - rate)) < 0.01 * (1 - rate) and torch.equal(keep, same) and agree < 0.9
        self.record(
            f"dropout keep share {share:.5f} (want {1 - rate}); "
            f"offset changes mask (agree {agree:.3f})",
            ok,
            keep_share=share,
        )

    def check_bad_input(self):
        q = self.randn((2, 8, 2, 48), torch.float16)
        cases = []
        try:
            self.lib.forward(q, q, q, None, 0.1)
            cases.append(("head_dim 48", False, "no error"))
        except ValueError as e:
            cases.append(("head_dim 48", "head_dim" in str(e), str(e)))
        q64 = self.randn((2, 8, 2, 64), torch.float16)
        try:
            self.lib.forward(q64, q64, q64, None, 0.1, dtype_code=7)
            cases.append(("dtype 7", False, "no error"))
        except ValueError as e:
            cases.append(("dtype 7", "dtype" in str(e), str(e)))
        if isinstance(self.lib, CudaLib):
            base = self.randn((2, 8, 2, 72), torch.float16)
            mis = base[..., 1:65]  # rows not 16-byte aligned
            try:
                self.lib.forward(mis, q64, q64, None, 0.1)
                cases.append(("misaligned q", False, "no error"))
            except ValueError as e:
                cases.append(("misaligned q", str(e).startswith("q:"), str(e)))
        for nm, ok, msg in cases:
            self.record(f"bad input: {nm}", ok, message=msg)


def run_checks(lib, device, quick):
    c = Checker(lib, device)
    dtypes = ["fp16", "bf16"]
    shapes = [(2, 3, 1), (3, 2, 7), (2, 2, 128), (3, 2, 129), (2, 2, 384), (1, 2, 512)]
    if quick:
        shapes = [(3, 2, 7), (3, 2, 129)]
    for dt in dtypes:
        for D in (32, 64, 128):
            for B, H, S in shapes:
                c.check_case(dt, B, H, S, S, D)
            c.check_case(dt, 2, 2, 65, 200, D)
            c.check_case(dt, 3, 2, 130, 130, D, layout="fused_qkv")
            # variants 4 and 6-9 exist for head dims 32 and 64 (128 runs variant 1)
            for variant in fwd_variants() if D <= 64 else (1, 2, 3, 5):
                c.check_case(
                    dt, 3, 2, 200, 200, D, variant=variant, bwd_variant=1 if variant == 1 else 2
                )
                # a tail tile, a query tile past the last full one, seq_q != seq_k
                c.check_case(dt, 2, 2, 131, 300, D, variant=variant)
            for S in (7, 100):
                c.check_case(dt, 3, 2, S, S, D, bwd_variant=1)
            # every backward variant, on shapes where its query order wraps around
            for bv in bwd_variants(2):
                c.check_case(dt, 3, 2, 200, 200, D, bwd_variant=bv)
                c.check_case(dt, 2, 2, 300, 520, D, bwd_variant=bv)
            c.check_case(dt, 2, 2, 96, 96, D, mask_kind="none")
            c.check_fully_masked(dt, D)
            # several key CTAs per head, some with no kept key (the dQ accumulator path)
            for bv in [0, *bwd_variants()] if D == 64 else (0,):
                c.check_fully_masked(dt, D, S=300, bwd_variant=bv)
    for D in (32, 64, 128):
        for B, H, S in [(3, 2, 7), (3, 2, 129)] if quick else [(3, 2, 7), (3, 2, 129), (2, 2, 384)]:
            c.check_case("fp32", B, H, S, S, D)
        c.check_fully_masked("fp32", D)
    c.check_case("fp32", 3, 2, 100, 100, 64, layout="fused_qkv")
    for dt in ("fp16", "bf16", "fp32"):
        c.check_no_queries(dt, 64)
    for dt in ("fp16", "bf16", "fp32"):
        c.check_dropout(dt, 64)
    for bv in bwd_variants(2):
        c.check_dropout("bf16", 64, bwd_variant=bv, S=300)
    for fv in fwd_variants():
        c.check_dropout("fp16", 64, fwd_variant=fv, S=300)
    c.check_dropout("fp16", 128)
    if getattr(lib, "has_cpu", False):
        for dt in ("fp32", "fp16", "bf16"):
            c.check_cpu_agrees(dt, 64)
        c.check_cpu_agrees("fp32", 128, rate=0.0)
    c.check_keep_rate()
    c.check_bad_input()
    return c


def _median_ms(fn, reps, warmup=10):
    for _ in range(warmup):
        fn(0)
    torch.cuda.synchronize()
    times = []
    for i in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(i)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _time_case(lib, sets, mask, scale, reps):
    """Median milliseconds of each implementation on rotating input sets."""
    n_sets = len(sets)
    B, S, H, _ = sets[0][0].shape
    device = sets[0][0].device
    outs = [torch.empty_like(s[0]) for s in sets]
    lses = [torch.empty((B, H, S), dtype=torch.float32, device=device) for _ in sets]
    grads = [tuple(torch.empty_like(s[0]) for _ in range(3)) for s in sets]
    leaves = [tuple(x.detach().clone().requires_grad_(True) for x in s[:3]) + (s[3],) for s in sets]
    ws = lib.workspace(sets[0][0], sets[0][1])

    def ours_fwd(i, var=0):
        j = i % n_sets
        return lib.forward(*sets[j][:3], mask, scale, variant=var, out=outs[j], lse=lses[j])

    def ours_fb(i, bv=0, fv=0):
        j = i % n_sets
        q, k, v, do = sets[j]
        o, lse = lib.forward(q, k, v, mask, scale, variant=fv, out=outs[j], lse=lses[j])
        lib.backward(q, k, v, mask, o, lse, do, scale, workspace=ws, grads=grads[j], variant=bv)

    def sdpa_fb(i, use_mask=True):
        q, k, v, do = leaves[i % n_sets]
        for x in (q, k, v):
            x.grad = None
        _sdpa(q, k, v, mask if use_mask else None, scale).backward(do)

    # Backward alone: the forward (ours) / the autograd graph (SDPA) of each
    # input set is made once, outside the timed region.
    fwd_once = [lib.forward(*s[:3], mask, scale) for s in sets]

    def ours_bwd(i, bv=0):
        j = i % n_sets
        q, k, v, do = sets[j]
        o, lse = fwd_once[j]
        lib.backward(q, k, v, mask, o, lse, do, scale, workspace=ws, grads=grads[j], variant=bv)

    graphs = [_sdpa(*lv[:3], mask, scale) for lv in leaves]

    def sdpa_bwd(i):
        q, k, v, do = leaves[i % n_sets]
        for x in (q, k, v):
            x.grad = None
        graphs[i % n_sets].backward(do, retain_graph=True)

    res = {}
    for var in fwd_variants():
        res[f"ours_fwd_v{var}"] = _median_ms(lambda i, var=var: ours_fwd(i, var), reps)
    best_fv = min(fwd_variants(), key=lambda x: res[f"ours_fwd_v{x}"])
    res["ours_fwd"] = _median_ms(ours_fwd, reps)
    res["sdpa_fwd_mask"] = _median_ms(lambda i: _sdpa(*sets[i % n_sets][:3], mask, scale), reps)
    res["sdpa_fwd_nomask"] = _median_ms(lambda i: _sdpa(*sets[i % n_sets][:3], None, scale), reps)
    res["ours_fwdbwd"] = _median_ms(ours_fb, reps)
    for bv in bwd_variants():
        res[f"ours_fwdbwd_bv{bv}"] = _median_ms(lambda i, bv=bv: ours_fb(i, bv), reps)
    # default backward after the fastest forward variant of this row
    res["ours_fwdbwd_best_fwd"] = _median_ms(lambda i: ours_fb(i, 0, best_fv), reps)
    res["sdpa_fwdbwd_mask"] = _median_ms(sdpa_fb, reps)
    res["sdpa_fwdbwd_nomask"] = _median_ms(lambda i: sdpa_fb(i, False), reps)
    res["ours_bwd"] = _median_ms(ours_bwd, reps)
    for bv in bwd_variants():
        res[f"ours_bwd_bv{bv}"] = _median_ms(lambda i, bv=bv: ours_bwd(i, bv), reps)
    res["sdpa_bwd_mask"] = _median_ms(sdpa_bwd, reps)
    return res


def run_timing(lib, device, dtypes, shapes, reps, masks=("full", "padded")):
    """shapes: (batch, seq) at head_dim 64, or (batch, seq, head_dim)."""
    H = 12
    rows = []
    gen = torch.Generator().manual_seed(7)
    for dt in dtypes:
        dtype = DTYPES[dt][1]
        for shape in shapes:
            B, S, D = shape if len(shape) == 3 else (*shape, 64)
            n_sets = max(2, min(6, (400 << 20) // (3 * B * S * H * D * 2)))
            sets = [
                tuple(
                    torch.randn((B, S, H, D), generator=gen).to(dtype).to(device) for _ in range(4)
                )
                for _ in range(n_sets)
            ]
            scale = 1.0 / math.sqrt(D)
            flops_fwd = 4.0 * B * H * S * S * D
            for mask_kind in masks:
                if mask_kind == "full":
                    mask = torch.ones((B, S), dtype=torch.int32, device=device)
                else:
                    lengths = torch.randint(S // 2, S + 1, (B,), generator=gen)
                    mask = (torch.arange(S)[None, :] < lengths[:, None]).to(torch.int32).to(device)
                res = _time_case(lib, sets, mask, scale, reps)
                best_var = min(
                    fwd_variants(), key=lambda x, res=res: res[f"ours_fwd_v{x}"]
                )
                best_bv = min(
                    bwd_variants(), key=lambda x, res=res: res[f"ours_fwdbwd_bv{x}"]
                )
                row = dict(
                    dtype=dt,
                    batch=B,
                    seq=S,
                    heads=H,
                    head_dim=D,
                    mask=mask_kind,
                    best_fwd_variant=best_var,
                    best_bwd_variant=best_bv,
                    **res,
                )
                row["tflops_ours_fwd"] = flops_fwd / res["ours_fwd"] / 1e9
                row["tflops_sdpa_fwd_mask"] = flops_fwd / res["sdpa_fwd_mask"] / 1e9
                row["tflops_ours_fwdbwd"] = 3.5 * flops_fwd / res["ours_fwdbwd"] / 1e9
                row["tflops_sdpa_fwdbwd_mask"] = 3.5 * flops_fwd / res["sdpa_fwdbwd_mask"] / 1e9
                row["ratio_fwd_vs_sdpa_mask"] = res["sdpa_fwd_mask"] / res["ours_fwd"]
                row["ratio_fwd_vs_sdpa_nomask"] = res["sdpa_fwd_nomask"] / res["ours_fwd"]
                row["ratio_fwdbwd_vs_sdpa_mask"] = res["sdpa_fwdbwd_mask"] / res["ours_fwdbwd"]
                row["ratio_bwd_vs_sdpa_mask"] = res["sdpa_bwd_mask"] / res["ours_bwd"]
                rows.append(row)
                print(
                    f"  {dt} B{B} S{S} D{D} {mask_kind}: fwd {res['ours_fwd']:.3f} ms (variants "
                    + "/".join(f"{res[f'ours_fwd_v{x}']:.3f}" for x in fwd_variants())
                    + ") "
                    f"vs sdpa {res['sdpa_fwd_mask']:.3f} ({row['ratio_fwd_vs_sdpa_mask']:.2f}x); "
                    f"fwd+bwd {res['ours_fwdbwd']:.3f} (bwd variants "
                    + "/".join(
                        f"{res[f'ours_fwdbwd_bv{x}']:.3f}" for x in bwd_variants()
                    )
                    + f"; after fwd v{best_var} {res['ours_fwdbwd_best_fwd']:.3f}) "
                    f"vs {res['sdpa_fwdbwd_mask']:.3f} ({row['ratio_fwdbwd_vs_sdpa_mask']:.2f}x); "
                    f"bwd alone {res['ours_bwd']:.3f} (variants "
                    + "/".join(f"{res[f'ours_bwd_bv{x}']:.3f}" for x in bwd_variants())
                    + f") vs {res['sdpa_bwd_mask']:.3f} ({row['ratio_bwd_vs_sdpa_mask']:.2f}x)",
                    flush=True,
                )
            sets = None
            torch.cuda.empty_cache()
    return rows


def profile_run(lib, device, B, S, variants, H=12, D=64):
    """One fp16 forward + backward per backward variant (all-ones mask)."""
    gen = torch.Generator().manual_seed(3)
    q, k, v, do = (torch.randn((B, S, H, D), generator=gen).half().to(device) for _ in range(4))
    mask = torch.ones((B, S), dtype=torch.int32, device=device)
    scale = 1.0 / math.sqrt(D)
    for bv in variants:
        out, lse = lib.forward(q, k, v, mask, scale)
        lib.backward(q, k, v, mask, out, lse, do, scale, variant=bv)
    torch.cuda.synchronize()


def print_table(rows):
    hdr = (
        "dtype",
        "B x S",
        "D",
        "mask",
        "ours fwd ms",
        "TFLOP/s",
        "SDPA+mask ms",
        "TFLOP/s",
        "x",
        "SDPA nomask ms",
        "x",
        "ours f+b ms",
        "TFLOP/s",
        "SDPA+mask f+b ms",
        "TFLOP/s",
        "x",
        "ours bwd ms",
        "SDPA+mask bwd ms",
        "x",
    )
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        print(
            f"| {r['dtype']} | {r['batch']} x {r['seq']} | {r['head_dim']} | {r['mask']} | "
            f"{r['ours_fwd']:.3f} | "
            f"{r['tflops_ours_fwd']:.0f} | {r['sdpa_fwd_mask']:.3f} | "
            f"{r['tflops_sdpa_fwd_mask']:.0f} | {r['ratio_fwd_vs_sdpa_mask']:.2f} | "
            f"{r['sdpa_fwd_nomask']:.3f} | {r['ratio_fwd_vs_sdpa_nomask']:.2f} | "
            f"{r['ours_fwdbwd']:.3f} | {r['tflops_ours_fwdbwd']:.0f} | "
            f"{r['sdpa_fwdbwd_mask']:.3f} | "
            f"{r['tflops_sdpa_fwdbwd_mask']:.0f} | {r['ratio_fwdbwd_vs_sdpa_mask']:.2f} | "
            f"{r['ours_bwd']:.3f} | {r['sdpa_bwd_mask']:.3f} | {r['ratio_bwd_vs_sdpa_mask']:.2f} |"
        )


def variant_summary(rows):
    """Per kernel variant, over the head-dim-64 rows: the geometric mean of its
    time over the default's, the rows it is fastest in, and the worst ratio to
    SDPA with the mask it would give as the default (forward; forward +
    backward with the default forward; backward alone). What the defaults in
    launch_impl.cuh are chosen from."""
    rows = [r for r in rows if r["head_dim"] == 64]
    out = []
    kinds = (
        ("fwd", "ours_fwd", "ours_fwd_v{}", "sdpa_fwd_mask", fwd_variants()),
        ("fwd+bwd", "ours_fwdbwd", "ours_fwdbwd_bv{}", "sdpa_fwdbwd_mask", bwd_variants()),
        ("bwd", "ours_bwd", "ours_bwd_bv{}", "sdpa_bwd_mask", bwd_variants()),
    )
    for kind, default, key, sdpa, variants in kinds:
        present = [v for v in variants if rows and all(key.format(v) in r for r in rows)]
        for v in present:
            ratios = [r[key.format(v)] / r[default] for r in rows]
            wins = sum(min(present, key=lambda x, r=r: r[key.format(x)]) == v for r in rows)
            worst = min(rows, key=lambda r: r[sdpa] / r[key.format(v)])
            out.append(
                dict(
                    kind=kind,
                    variant=v,
                    geomean_vs_default=math.exp(sum(map(math.log, ratios)) / len(ratios)),
                    fastest_rows=wins,
                    rows=len(rows),
                    worst_vs_sdpa_mask=worst[sdpa] / worst[key.format(v)],
                    worst_row=f"{worst['dtype']} {worst['batch']}x{worst['seq']} {worst['mask']}",
                )
            )
    return out


def print_variant_summary(summary):
    print("| kind | variant | time / default's (geomean) | fastest in | worst x vs SDPA+mask |")
    print("|---|---:|---:|---:|---|")
    for s in summary:
        print(
            f"| {s['kind']} | {s['variant']} | {s['geomean_vs_default']:.3f} | "
            f"{s['fastest_rows']}/{s['rows']} | {s['worst_vs_sdpa_mask']:.2f} ({s['worst_row']}) |"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", help="path of libpybert_attention_cuda.so")
    ap.add_argument("--out", help="write results JSON here")
    ap.add_argument(
        "--quick", action="store_true", help="fewer correctness shapes, fewer timing reps"
    )
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-checks", action="store_true", help="timing only")
    ap.add_argument(
        "--shapes",
        metavar="B,S[,D];...",
        help="time these shapes (fp16 and bf16, all-ones and padded masks) instead of the "
        "standard table",
    )
    ap.add_argument(
        "--profile",
        metavar="B,S,VARIANTS",
        help="only run one fp16 fwd+bwd at batch B x seq S per listed backward variant "
        "(e.g. 8,2048,2:4), for a profiler such as ncu; no checks",
    )
    ap.add_argument(
        "--skip-variants",
        metavar="fwd:A,B;bwd:C",
        help="leave these kernel variants out of the checks and timings (e.g. after a "
        "failed --smoke-wgmma)",
    )
    ap.add_argument(
        "--smoke-wgmma",
        action="store_true",
        help="only check the Hopper wgmma variants (forward 10-13; backward 5) on a few "
        "shapes; exit status 1 if any fails (check_attention.sh runs this in a process "
        "of its own first: a fault there would end the main run's CUDA context)",
    )
    ap.add_argument(
        "--emulate", action="store_true", help="CPU stand-in for the kernels (tests this script)"
    )
    ap.add_argument(
        "--emu",
        metavar="MODE",
        nargs="?",
        const="forward,late,warps",
        help="--lib is the CPU emulation build of the kernels (bench/gpu/build_emu.sh): run "
        "the real kernel code on the CPU (checks only). MODE: warp order forward|reverse, "
        "cp.async copies land early|late, schedule warps|lockstep (csrc/attention/emu/"
        "cuda_emu.h), e.g. reverse,early,lockstep (default forward,late,warps)",
    )
    args = ap.parse_args(argv)
    if args.skip_variants:
        try:
            for part in args.skip_variants.split(";"):
                kind, _, nums = part.partition(":")
                target = {"fwd": SKIP_FWD, "bwd": SKIP_BWD}[kind.strip()]
                target.update(int(x) for x in nums.split(",") if x.strip())
        except (KeyError, ValueError):
            sys.exit(f"--skip-variants: expected fwd:A,B;bwd:C, got {args.skip_variants!r}")
    t0 = time.time()
    if args.emulate:
        lib, device = EmulatedLib(), torch.device("cpu")
    elif args.emu:
        if not args.lib:
            sys.exit("--emu: give the emulation build with --lib (bench/gpu/build_emu.sh)")
        lib, device = CudaLib(args.lib, emulated=True), torch.device("cpu")
        try:
            lib.set_emu_mode(args.emu)
        except ValueError as e:
            sys.exit(f"--emu: {e}")
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device visible to PyTorch")
        lib, device = CudaLib(args.lib), torch.device("cuda")
    info = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else ("cpu (CUDA emulation: " + args.emu + ")" if args.emu else "cpu"),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(info, flush=True)
    if args.smoke_wgmma:
        c = Checker(lib, device)
        for dt in ("fp16", "bf16"):
            for fv in WGMMA_FWD:  # 4 key tiles (the pipelined variant's ring of 3 wraps)
                c.check_case(dt, 2, 2, 131, 500, 64, variant=fv)
            for bv in WGMMA_BWD:
                c.check_case(dt, 2, 2, 200, 300, 64, bwd_variant=bv)
        ok = not c.failures
        print(f"wgmma smoke test: {'ok' if ok else 'FAILED'} ({len(c.rows)} checks)", flush=True)
        return 0 if ok else 1
    if args.profile:
        B, S, variants = args.profile.split(",")
        profile_run(lib, device, int(B), int(S), [int(x) for x in variants.split(":")])
        return 0
    checker = Checker(lib, device) if args.skip_checks else run_checks(lib, device, args.quick)
    n_ok = sum(r["ok"] for r in checker.rows)
    print(f"correctness: {n_ok}/{len(checker.rows)} passed ({time.time() - t0:.0f} s)", flush=True)
    timing = []
    if not args.skip_timing and device.type == "cuda":
        reps = 50 if args.quick else 100
        if args.shapes:
            shapes = [tuple(int(x) for x in sh.split(",")) for sh in args.shapes.split(";")]
            timing = run_timing(lib, device, ["fp16", "bf16"], shapes, reps=reps)
        else:
            shapes = [(256, 128), (64, 384), (64, 512), (8, 2048)]
            timing = run_timing(lib, device, ["fp16", "bf16"], shapes, reps=reps)
            # the other head dims (the variant table in launch_impl.cuh)
            timing += run_timing(
                lib, device, ["fp16"], [(64, 512, 32), (64, 512, 128)], reps=50, masks=("full",)
            )
    summary = variant_summary(timing) if timing else []
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {"info": info, "checks": checker.rows, "timing": timing, "variants": summary},
                f,
                indent=1,
            )
    worst = {}
    for r in checker.rows:
        for nm, e in r.get("errors", {}).items() if isinstance(r.get("errors"), dict) else []:
            key = r["name"].split()[0] + " " + nm
            worst[key] = max(
                worst.get(key, 0.0),
                e["ours"] / max(next(iter(v for k_, v in e.items() if k_ != "ours")), 1e-30),
            )
    print(
        "worst error ratio ours/SDPA per dtype and tensor:",
        {k: round(v, 3) for k, v in sorted(worst.items())},
    )
    if timing:
        print(
            f"device: {info['device']}, torch {info['torch']}, {info['date']}; H=12, D=64; "
            "ms = median of CUDA-event "
            "timings; x = SDPA time / ours"
        )
        print_table(timing)
        print("kernel variants (head dim 64 rows; default = today's choice, launch_impl.cuh):")
        print_variant_summary(summary)
    print(f"total {time.time() - t0:.0f} s; failures: {checker.failures}")
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main())
