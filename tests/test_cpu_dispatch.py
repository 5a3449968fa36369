"""The CPU's run-time choices: each instruction set's vector math against libm (through torch in
float64), and the whole parity check again with each instruction set and with the ATen GEMM
fallback forced, in subprocesses (the choice is made once per process)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from fastrnn import _C

ISAS = ["avx512", "avx2", "baseline"]
SUPPORTED = ISAS[ISAS.index(_C.cpu_isa_detected()):]
REFERENCE = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def _grid() -> torch.Tensor:
    dense = torch.linspace(-30, 30, 600_001)
    wide = torch.cat([torch.logspace(-40, 2.1, 20_000), -torch.logspace(-40, 2.1, 20_000)])
    return torch.cat([dense, wide]).float()


@pytest.mark.parametrize("isa", SUPPORTED)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_vector_math_within_two_ulp(isa, activation):
    x = _grid()
    actual = _C.cpu_activation(activation, isa, x).double()
    expected = REFERENCE[activation](x.double())
    # ulp of the float32 result, floored at the smallest normal (below it, absolute error counts)
    ulp = torch.finfo(torch.float32).eps * expected.abs().clamp_min(torch.finfo(torch.float32).tiny)
    worst = ((actual - expected).abs() / ulp).max().item()
    assert worst <= 2.0, f"{isa} {activation}: {worst:.2f} ulp"


@pytest.mark.parametrize("isa", SUPPORTED)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_vector_math_special_values(isa, activation):
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 200.0, -200.0,
                            1e-45, -1e-45, 88.8, -88.8, 89.0, -89.0, 150.0, -150.0])
    # lengths 1..33 cover every masked tail of the 8- and 16-lane kernels
    for n in (1, 7, 8, 9, 15, 16, 17, 33):
        x = special.repeat(3)[:n]
        actual = _C.cpu_activation(activation, isa, x)
        expected = REFERENCE[activation](x.double()).float()
        torch.testing.assert_close(actual, expected, rtol=2e-7, atol=1e-38, equal_nan=True)
        assert torch.equal(torch.signbit(actual[x == 0]), torch.signbit(expected[x == 0])) or \
            activation == "relu"


@pytest.mark.parametrize("isa", SUPPORTED)
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
def test_tiled_gemm_matches_matmul(isa, trans_a):
    """Backward's input and weight gradients run this GEMM: every tile height (1..6 rows and the
    6-row tiles' splits), every masked column tail, blocks of 48 x 64 and inner stretches of 128
    (and an empty one), strided operands, and accumulation into C, against float64 matmul."""
    torch.manual_seed(0)
    shapes = [(1, 1, 1), (5, 17, 3), (6, 16, 7), (7, 15, 1), (13, 33, 256), (49, 65, 257),
              (100, 130, 600), (97, 64, 0), (2, 200, 40), (300, 3, 9)]
    for m, n, k in shapes:
        a = torch.randn(k + 3, m + 5)[:k, 2:m + 2] if trans_a else torch.randn(m, k + 4)[:, 1:k + 1]
        b = torch.randn(k, n + 2)[:, :n]
        op_a = (a.t() if trans_a else a).double()
        expected = op_a @ b.double()
        actual = _C.cpu_tiled_gemm(isa, a, trans_a, b)
        tol = 2e-6 * max(k, 1) ** 0.5
        torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)
        c = torch.randn(m, n)
        actual = _C.cpu_tiled_gemm(isa, a, trans_a, b, c)
        torch.testing.assert_close(actual.double(), expected + c.double(), rtol=tol, atol=tol)


def test_unsupported_isa_is_refused():
    if "avx512" in SUPPORTED:
        pytest.skip("this CPU supports every instruction set")
    with pytest.raises(RuntimeError, match="does not support"):
        _C.cpu_activation("tanh", "avx512", torch.zeros(4))


PARITY_SCRIPT = textwrap.dedent("""
    import torch, fastrnn
    from torch import nn
    from fastrnn import _C
    print(_C.cpu_isa(), _C.cpu_gemm_backend())
    torch.manual_seed(0)
    for mode in ["LSTM", "GRU", "RNN"]:
        for hidden, steps, batch in ((5, 6, 3), (21, 40, 3), (21, 4, 8), (21, 6, 1), (21, 43, 6)):
            # W_hh read as stored: short calls of a few rows (3 x 6, 8 x 4) and batch 1; packed
            # into panels: 3 x 40 rows, and 6 x 43 rows with W_ih packed into the steps too
            ref = getattr(nn, mode)(4, hidden, num_layers=2, bidirectional=True)
            fast = getattr(fastrnn, mode)(4, hidden, num_layers=2, bidirectional=True)
            fast.load_state_dict(ref.state_dict())
            x = torch.randn(steps, batch, 4, requires_grad=True)
            outs = [m(x)[0] for m in (ref, fast)]
            torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
            g = torch.randn_like(outs[0])
            for a, b in zip(torch.autograd.grad(outs[1], [x, *fast.parameters()], g),
                            torch.autograd.grad(outs[0], [x, *ref.parameters()], g)):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        # bfloat16 that reads W_hh as stored (batch 1, short calls of a few rows) widens bfloat16
        # weights as it reads them: float32's result exactly
        for steps, batch in ((1, 1), (5, 1), (1, 3), (5, 3)):
            fast16 = getattr(fastrnn, mode)(19, 21).to(torch.bfloat16)
            fast32 = getattr(fastrnn, mode)(19, 21)
            fast32.load_state_dict({k: v.float() for k, v in fast16.state_dict().items()})
            x = torch.randn(steps, batch, 19).to(torch.bfloat16)
            with torch.no_grad():
                assert torch.equal(fast16(x)[0], fast32(x.float())[0].to(torch.bfloat16))
    print("ok")
""")


@pytest.mark.parametrize("env", [{"FASTRNN_CPU_ISA": isa} for isa in SUPPORTED] +
                         [{"FASTRNN_CPU_BLAS": "aten"}, {"FASTRNN_CPU_GEMM": "blas"}],
                         ids=[f"isa={isa}" for isa in SUPPORTED] + ["gemm=aten", "tiled=off"])
def test_parity_under_each_cpu_path(env):
    result = subprocess.run([sys.executable, "-c", PARITY_SCRIPT], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    isa, gemm, status = result.stdout.split()
    assert isa == env.get("FASTRNN_CPU_ISA", _C.cpu_isa())
    assert gemm == ("aten" if "FASTRNN_CPU_BLAS" in env else _C.cpu_gemm_backend())
    assert status == "ok"


def test_gemm_uses_blas_in_torch_wheels():
    """The x86-64 torch wheels carry MKL's Fortran BLAS; the ATen fallback is for other builds."""
    if os.environ.get("FASTRNN_CPU_BLAS"):
        pytest.skip("forced by the environment")
    assert _C.cpu_gemm_backend() == "blas"


def test_every_instruction_set_is_compiled():
    """One build carries every instruction set's kernels, whatever CPU built it or runs it: the
    AVX-512 kernels (FMAs on zmm registers), the AVX512_BF16 products (vdpbf16ps) and the AVX2
    kernels (FMAs on ymm registers) are in the extension's machine code. On a CPU without
    AVX-512 this is what shows those kernels were built; they run where the CPU has them."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("needs objdump (GNU binutils) to read the extension's machine code")
    code = subprocess.run([objdump, "-d", "--no-show-raw-insn", _C.__file__], capture_output=True,
                          text=True, timeout=300, check=True).stdout
    assert re.search(r"\bvdpbf16ps\b", code)
    assert re.search(r"\bvfmadd\w+ps\s+.*%zmm", code)
    assert re.search(r"\bvfmadd\w+ps\s+.*%ymm", code)
