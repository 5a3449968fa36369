"""Tier 1 of DESIGN.md's GPU work: fastrnn's CUDA step kernels (csrc/cuda, the .cu files as they
are) compiled as host C++ under csrc/cuda/emulation/cuda_emulation.h and run on CPU tensors,
in float32, float64, float16 and bfloat16, against double-precision references written here from
torch.nn's formulas (not from fastrnn's cell math). Outputs start as NaN, and rows are read and
written through a stride wider than the row, so an element a kernel fails to write, or one it
writes past its row, shows. Each kernel runs with its threads in forward, reverse and shuffled
order (and one OS thread per CUDA thread on small grids): results must be bitwise equal, or the
kernel depends on thread order. Also the emulation itself: launch checks as the runtime's, the
last error, __syncthreads with __shared__ memory, a cooperative grid barrier, and a grid of more
than 65536 x 256 threads, which wraps the grid-stride loops.

The extension is built once per session (about a minute; tests/cuda_emulation/module.cpp). Under
scripts/sanitize.sh (FASTRNN_EMULATION_SANITIZE) it is built with AddressSanitizer and UBSan,
the analogue of compute-sanitizer's memcheck, and then with ThreadSanitizer for the tests of the
threaded and cooperative modes, the analogue of its racecheck."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.cuda_emulation

ROOT = Path(__file__).resolve().parents[1]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
ORDERS = ["forward", "reverse", "shuffled"]
HALF_DEFINES = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]


def cuda_include_dir() -> Path | None:
    """The CUDA toolkit's include directory (NVIDIA's cuda_fp16.h, cuda_runtime_api.h)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for home in filter(None, candidates):
        if (Path(home) / "include" / "cuda_fp16.h").exists():
            return Path(home) / "include"
    nvcc = shutil.which("nvcc")
    if nvcc is not None:  # nvcc knows where its headers are, wrapper scripts or not
        dry = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True)
        for path in re.findall(r'INCLUDES="?-I"?([^"\s]+)', dry.stdout + dry.stderr):
            if (Path(path) / "cuda_fp16.h").exists():
                return Path(path)
    return None


@pytest.fixture(scope="session")
def emu(tmp_path_factory):
    """The test extension, built against the kernels as they are."""
    from torch.utils.cpp_extension import load

    include = cuda_include_dir()
    if include is None:
        pytest.skip("needs a CUDA toolkit's headers (cuda_fp16.h): nvcc or CUDA_HOME")
    build = tmp_path_factory.mktemp("cuda_emulation")
    here = ROOT / "tests" / "cuda_emulation"
    # tier 1: the kernels and the emulation; tier 2: cuda_ops.cpp (through ops.cpp), the CPU
    # glue it builds on, and the emulated cuBLAS
    sources = [here / "module.cpp", here / "ops.cpp", here / "emulated_cublas.cpp",
               ROOT / "csrc" / "cuda" / "emulation" / "cuda_emulation.cpp",
               *[ROOT / "csrc" / "ops" / f"{name}.cpp" for name in ("layer_ops", "layer_args")],
               ROOT / "csrc" / "cpu" / "block_cache.cpp"]
    for name in ("f32", "f64", "f16", "bf16"):  # the .cu files, compiled as C++
        wrapper = build / f"step_kernels_{name}.cpp"
        wrapper.write_text(f'#include "{ROOT}/csrc/cuda/step_kernels_{name}.cu"\n')
        sources.append(wrapper)
    flags = ["-O2", "-DFASTRNN_CUDA_EMULATION",
             f"-include{ROOT}/csrc/cuda/emulation/cuda_emulation.h", *HALF_DEFINES]
    ldflags = ["-Wl,-Bsymbolic"]  # its cudaGetLastError, never a libcudart's
    sanitize = os.environ.get("FASTRNN_EMULATION_SANITIZE")
    if sanitize:
        flags += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        ldflags += [f"-fsanitize={sanitize}"]
    return load(name="fastrnn_cuda_emulation", sources=[str(s) for s in sources],
                extra_cflags=flags, extra_ldflags=ldflags, build_directory=str(build),
                extra_include_paths=[str(here / "standins"), str(ROOT / "csrc"),
                                     str(ROOT / "csrc" / "include"), str(include)])


# ---- data: rows through a stride wider than the row, outputs poisoned ----

def acc_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def strided(rows: int, width: int, dtype, values=None, generator=None, scale=1.0):
    """[rows, width] viewed in a [rows, width + 3] buffer: NaN everywhere but the view, which
    holds `values`, random numbers, or NaN (an output)."""
    buffer = torch.full((rows, width + 3), float("nan"), dtype=dtype)
    view = buffer[:, :width]
    if values is not None:
        view.copy_(values)
    elif generator is not None:
        view.copy_(torch.randn(rows, width, generator=generator, dtype=torch.float64) * scale)
    return view


def padding_untouched(view) -> bool:
    """The columns past the row's width are still NaN: no write past a row's end."""
    buffer = torch.as_strided(view, (view.shape[0], view.stride(0)), (view.stride(0), 1))
    return bool(buffer[:, view.shape[1]:].isnan().all())


def vector(n, dtype, generator):
    return (torch.randn(n, generator=generator, dtype=torch.float64) * 0.5).to(dtype)


def check(actual, expected, dtype):
    """actual (a kernel's output, fully written) against the double reference, to the storage
    precision of its dtype."""
    assert not actual.isnan().any(), "an element left unwritten"
    tolerance = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3,
                 torch.bfloat16: 1.6e-2}[actual.dtype]
    torch.testing.assert_close(actual.double(), expected, rtol=tolerance, atol=tolerance)


def rounded(x, dtype):
    """x as the kernel reads a value stored in dtype."""
    return x.to(dtype).double()


# ---- the kernels, each against its reference ----

def run_lstm_forward(emu, dtype, rows, hidden, generator, with_bias=True, with_y=True):
    A = acc_dtype(dtype)
    H = hidden
    gates_in = strided(rows, 4 * H, A, generator=generator)
    c_prev = strided(rows, H, A, generator=generator)
    b_ih, b_hh = (vector(4 * H, dtype, generator) for _ in range(2)) if with_bias else (None, None)
    gates = strided(rows, 4 * H, A, values=gates_in)
    c = strided(rows, H, A, values=c_prev)
    c_saved, h = strided(rows, H, A), strided(rows, H, dtype)
    y = strided(rows, H, dtype) if with_y else None
    assert emu.lstm_forward(gates, b_ih, b_hh, c, c_saved, h, y) == 0
    pre = gates_in.double() + (rounded(b_ih, dtype) + rounded(b_hh, dtype) if with_bias else 0)
    i, f, g, o = pre.chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c_new = f * c_prev.double() + i * g
    h_new = o * c_new.tanh()
    expected = {"gates": torch.cat([i, f, g, o], 1), "c": c_new, "c_saved": c_new, "h": h_new}
    actual = {"gates": gates, "c": c, "c_saved": c_saved, "h": h}
    if with_y:
        expected["y"], actual["y"] = h_new, y
    return actual, expected


def run_lstm_backward(emu, dtype, rows, hidden, generator, with_dy=True, with_r=True):
    A = acc_dtype(dtype)
    H = hidden
    gates = strided(rows, 4 * H, A, values=torch.cat(
        [torch.rand(rows, H, generator=generator, dtype=torch.float64) * 0.98 + 0.01,
         torch.rand(rows, H, generator=generator, dtype=torch.float64) * 0.98 + 0.01,
         torch.rand(rows, H, generator=generator, dtype=torch.float64) * 1.96 - 0.98,
         torch.rand(rows, H, generator=generator, dtype=torch.float64) * 0.98 + 0.01], 1))
    c, c_prev, dh = (strided(rows, H, A, generator=generator) for _ in range(3))
    dy = strided(rows, H, dtype, generator=generator) if with_dy else None
    dc_in = strided(rows, H, A, generator=generator)
    dc = strided(rows, H, A, values=dc_in)
    dgates = strided(rows, 4 * H, dtype)
    r = strided(rows, H, dtype) if with_r else None
    assert emu.lstm_backward(gates, c, c_prev, dh, dy, dc, dgates, r) == 0
    i, f, g, o = gates.double().chunk(4, 1)
    d = dh.double() + (dy.double() if with_dy else 0)
    tanh_c = c.double().tanh()
    dc_total = dc_in.double() + d * o * (1 - tanh_c ** 2)
    expected = {
        "dgates": torch.cat([dc_total * g * i * (1 - i), dc_total * c_prev.double() * f * (1 - f),
                             dc_total * i * (1 - g ** 2), d * tanh_c * o * (1 - o)], 1),
        "dc": dc_total * f}
    actual = {"dgates": dgates, "dc": dc}
    if with_r:
        expected["r"], actual["r"] = o * tanh_c, r
    return actual, expected


def run_gru_forward(emu, dtype, rows, hidden, generator, with_bias=True, with_y=True):
    A = acc_dtype(dtype)
    H = hidden
    x = torch.randn(rows, 3 * H, generator=generator, dtype=torch.float64)
    gates = strided(rows, 4 * H, A, values=torch.cat([x, torch.zeros(rows, H, dtype=torch.float64)
                                                      .fill_(float("nan"))], 1))
    hh = strided(rows, 3 * H, A, generator=generator)
    b_ih, b_hh = (vector(3 * H, dtype, generator) for _ in range(2)) if with_bias else (None, None)
    h_prev = strided(rows, H, dtype, generator=generator)
    h = strided(rows, H, dtype)
    y = strided(rows, H, dtype) if with_y else None
    assert emu.gru_forward(gates, hh, b_ih, b_hh, h_prev, h, y) == 0
    x_side = rounded(x, A) + (rounded(b_ih, dtype) if with_bias else 0)
    h_side = hh.double() + (rounded(b_hh, dtype) if with_bias else 0)
    xr, xz, xn = x_side.chunk(3, 1)
    hr, hz, hn = h_side.chunk(3, 1)
    r_gate, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
    n = (xn + r_gate * hn).tanh()
    h_new = (1 - z) * n + z * h_prev.double()
    expected = {"gates": torch.cat([r_gate, z, n, hn], 1), "h": h_new}
    actual = {"gates": gates, "h": h}
    if with_y:
        expected["y"], actual["y"] = h_new, y
    return actual, expected


def run_gru_backward(emu, dtype, rows, hidden, generator, with_dy=True):
    A = acc_dtype(dtype)
    H = hidden
    gates = strided(rows, 4 * H, A, values=torch.cat(
        [torch.rand(rows, 2 * H, generator=generator, dtype=torch.float64) * 0.98 + 0.01,
         torch.rand(rows, H, generator=generator, dtype=torch.float64) * 1.96 - 0.98,
         torch.randn(rows, H, generator=generator, dtype=torch.float64)], 1))
    h_prev = strided(rows, H, dtype, generator=generator)
    dy = strided(rows, H, dtype, generator=generator) if with_dy else None
    dh_in = strided(rows, H, A, generator=generator)
    dh = strided(rows, H, A, values=dh_in)
    dgates_ih, dgates_hh = strided(rows, 3 * H, dtype), strided(rows, 3 * H, dtype)
    assert emu.gru_backward(gates, h_prev, dy, dh, dgates_ih, dgates_hh) == 0
    r_gate, z, n, h_n = gates.double().chunk(4, 1)
    d = dh_in.double() + (dy.double() if with_dy else 0)
    dn = d * (1 - z) * (1 - n ** 2)
    dz = d * (h_prev.double() - n) * z * (1 - z)
    dr = dn * h_n * r_gate * (1 - r_gate)
    expected = {"dgates_ih": torch.cat([dr, dz, dn], 1),
                "dgates_hh": torch.cat([dr, dz, dn * r_gate], 1), "dh": d * z}
    return {"dgates_ih": dgates_ih, "dgates_hh": dgates_hh, "dh": dh}, expected


def run_rnn_forward(emu, dtype, rows, hidden, generator, relu=False, with_bias=True, with_y=True):
    A = acc_dtype(dtype)
    pre = strided(rows, hidden, A, generator=generator)
    b_ih, b_hh = (vector(hidden, dtype, generator) for _ in range(2)) if with_bias else (None, None)
    h = strided(rows, hidden, dtype)
    y = strided(rows, hidden, dtype) if with_y else None
    assert emu.rnn_forward(relu, pre, b_ih, b_hh, h, y) == 0
    total = pre.double() + (rounded(b_ih, dtype) + rounded(b_hh, dtype) if with_bias else 0)
    h_new = total.relu() if relu else total.tanh()
    expected, actual = {"h": h_new}, {"h": h}
    if with_y:
        expected["y"], actual["y"] = h_new, y
    return actual, expected


def run_rnn_backward(emu, dtype, rows, hidden, generator, relu=False, with_dy=True):
    A = acc_dtype(dtype)
    values = torch.rand(rows, hidden, generator=generator, dtype=torch.float64) * 1.96 - 0.98
    if relu:
        values = values.clamp_min(0)  # a relu output: zeros where the unit was off
    h = strided(rows, hidden, dtype, values=values)
    dh = strided(rows, hidden, A, generator=generator)
    dy = strided(rows, hidden, dtype, generator=generator) if with_dy else None
    dpre = strided(rows, hidden, dtype)
    assert emu.rnn_backward(relu, h, dh, dy, dpre) == 0
    d = dh.double() + (dy.double() if with_dy else 0)
    hv = h.double()
    expected = d * (hv > 0) if relu else d * (1 - hv ** 2)
    return {"dpre": dpre}, {"dpre": expected}


KERNELS = {
    "lstm_forward": run_lstm_forward, "lstm_backward": run_lstm_backward,
    "gru_forward": run_gru_forward, "gru_backward": run_gru_backward,
    "rnn_tanh_forward": run_rnn_forward,
    "rnn_relu_forward": lambda *a, **k: run_rnn_forward(*a, relu=True, **k),
    "rnn_tanh_backward": run_rnn_backward,
    "rnn_relu_backward": lambda *a, **k: run_rnn_backward(*a, relu=True, **k),
}
# Optional arguments each kernel takes as null (off) in some calls.
OPTIONALS = {"lstm_forward": ["with_bias", "with_y"], "lstm_backward": ["with_dy", "with_r"],
             "gru_forward": ["with_bias", "with_y"], "gru_backward": ["with_dy"],
             "rnn_tanh_forward": ["with_bias", "with_y"], "rnn_relu_forward": ["with_bias", "with_y"],
             "rnn_tanh_backward": ["with_dy"], "rnn_relu_backward": ["with_dy"]}


@contextlib.contextmanager
def emulation_mode(emu, mode):
    """Launches run in `mode` inside the block; the default (forward) again after it."""
    emu.set_mode(mode)
    try:
        yield
    finally:
        emu.set_mode("forward")


def run_in_child(emu, statements, **env):
    """Runs `statements` in a child python that has imported the extension as `emu` (for what
    stops the process it happens in); its CompletedProcess."""
    code = (f"import sys, torch; sys.path.insert(0, {str(Path(emu.__file__).parent)!r}); "
            f"import fastrnn_cuda_emulation as emu; {statements}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **env))


def run_in_order(emu, order, kernel, dtype, rows, hidden, seed, **options):
    with emulation_mode(emu, order):
        generator = torch.Generator().manual_seed(seed)
        return KERNELS[kernel](emu, dtype, rows, hidden, generator, **options)


@pytest.mark.parametrize("optional_off", [False, True], ids=["all", "optional_null"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[1])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_kernel_matches_reference_in_every_thread_order(emu, kernel, dtype, optional_off):
    """Against the double reference; every output fully written and nothing past a row; the
    same bits whatever order the threads run in. 37 x 19 units: a grid of several blocks of 256
    threads with a partial last block."""
    options = {name: not optional_off for name in OPTIONALS[kernel]}
    results = [run_in_order(emu, order, kernel, dtype, 37, 19, 1234, **options)
               for order in ORDERS]
    actual, expected = results[0]
    assert actual.keys() == expected.keys()
    for name in expected:
        check(actual[name], expected[name], actual[name].dtype)
        assert padding_untouched(actual[name]), f"{name}: written past the end of a row"
        for other, _ in results[1:]:
            assert torch.equal(other[name].nan_to_num(), actual[name].nan_to_num()), \
                f"{name}: thread order changes the result"


@pytest.mark.parametrize("kernel", ["lstm_forward", "gru_backward", "rnn_tanh_forward"])
def test_one_os_thread_per_cuda_thread_gives_the_same_bits(emu, kernel):
    """Mode kThreaded (what kernels with __shared__ memory will run in) on a small grid."""
    sequential, _ = run_in_order(emu, "forward", kernel, torch.float32, 3, 90, 7)
    threaded, _ = run_in_order(emu, "threaded", kernel, torch.float32, 3, 90, 7)
    for name in sequential:
        assert torch.equal(threaded[name].nan_to_num(), sequential[name].nan_to_num())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_conversions_round_as_torch(emu, dtype, generator):
    """convert(): float to half type rounds to nearest even (CUDA's __float2half_rn /
    __float2bfloat16_rn, through NVIDIA's headers) as torch does, bit for bit, specials
    included; and back exactly."""
    values = torch.cat([torch.randn(5000, generator=generator) * 100,
                        torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e-8, -1e-8,
                                      65504.0, 65520.0, 3.4e38, 1.0 + 2 ** -11, 1.0 + 2 ** -8])])
    narrow = torch.full((values.numel(),), float("nan"), dtype=dtype)
    assert emu.convert(narrow, values) == 0
    assert torch.equal(narrow.view(torch.int16), values.to(dtype).view(torch.int16))
    wide = torch.full((values.numel(),), float("nan"))
    assert emu.convert(wide, narrow) == 0
    assert torch.equal(wide, narrow.float())


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[1])
def test_add(emu, dtype, generator):
    a = torch.randn(3001, generator=generator, dtype=torch.float64).to(dtype)
    b = torch.randn(3001, generator=generator, dtype=torch.float64).to(acc_dtype(dtype))
    out = torch.full((3001,), float("nan"), dtype=dtype)
    assert emu.add(out, a, b) == 0
    assert torch.equal(out, (a.to(acc_dtype(dtype)) + b).to(dtype))


def test_grid_stride_loops_wrap(emu, generator):
    """More elements than the grid's 65536 x 256 threads: every thread makes a second pass."""
    rows, hidden = 65_600, 256  # 16 793 600 > 16 777 216
    actual, expected = run_rnn_forward(emu, torch.float32, rows, hidden, generator)
    for name in expected:
        check(actual[name], expected[name], torch.float32)
    n = 65536 * 256 + 4097
    out = torch.full((n,), float("nan"), dtype=torch.bfloat16)
    values = torch.randn(n, generator=generator)
    assert emu.convert(out, values) == 0
    assert torch.equal(out, values.to(torch.bfloat16))


# ---- the emulation itself ----

@pytest.mark.parametrize("grid, block, shared, error", [
    ((1, 1, 1), (256, 1, 1), 0, "cudaSuccess"),
    ((1, 1, 1), (1025, 1, 1), 0, "cudaErrorInvalidConfiguration"),
    ((1, 1, 1), (32, 32, 2), 0, "cudaErrorInvalidConfiguration"),   # 2048 threads a block
    ((1, 1, 1), (1, 1, 65), 0, "cudaErrorInvalidConfiguration"),
    ((1, 65536, 1), (1, 1, 1), 0, "cudaErrorInvalidConfiguration"),
    ((0, 1, 1), (1, 1, 1), 0, "cudaErrorInvalidConfiguration"),
    ((1, 1, 1), (1, 1, 1), 48 * 1024 + 1, "cudaErrorInvalidValue"),
])
def test_launch_configuration_checked_as_the_runtime_does(emu, grid, block, shared, error):
    before = emu.launches()
    peeked, got = emu.check_launch(list(grid), list(block), shared)
    assert emu.error_name(peeked) == emu.error_name(got) == error
    assert emu.launches() == before + (error == "cudaSuccess")
    assert emu.check_launch([1, 1, 1], [1, 1, 1], 0) == (0, 0)  # the error was cleared


def test_syncthreads_and_shared_memory_in_threaded_mode(emu, generator):
    values = torch.randn(4 * 128, generator=generator)
    out = torch.full_like(values, float("nan"))
    with emulation_mode(emu, "threaded"):
        assert emu.run_reverse_in_block(values, out, 128) == 0
    assert torch.equal(out, values.view(4, 128).flip(1).reshape(-1))


def test_cooperative_launch_and_its_limit(emu):
    with emulation_mode(emu, "cooperative"):
        buffer, out = torch.zeros(4 * 32), torch.full((4 * 32,), float("nan"))
        assert emu.run_rotate_blocks(buffer, out, 4, 32) == 0
        assert torch.equal(out, torch.arange(128.0).roll(-32))
        big = torch.zeros(9 * 32)
        assert emu.error_name(emu.run_rotate_blocks(big, big.clone(), 9, 32)) == \
            "cudaErrorCooperativeLaunchTooLarge"


def test_sequential_syncthreads_is_refused(emu):
    """A kernel that syncs cannot run one thread after another: the emulation stops with a
    message naming the mode it needs (in a child process: it aborts)."""
    result = run_in_child(emu, "emu.run_reverse_in_block(torch.zeros(64), torch.zeros(64), 64)")
    assert result.returncode != 0
    assert "__syncthreads in a sequential launch: run this kernel in Mode::kThreaded" in \
        result.stderr


@pytest.mark.skipif("thread" not in os.environ.get("FASTRNN_EMULATION_SANITIZE", ""),
                    reason="runs in scripts/sanitize.sh's ThreadSanitizer pass")
def test_threadsanitizer_reports_a_missing_syncthreads(emu):
    """The racecheck analogue can fail: the block reversal of
    test_syncthreads_and_shared_memory_in_threaded_mode (which runs clean in the same pass)
    without its __syncthreads is a data race that ThreadSanitizer reports (in a child process:
    a report stops it)."""
    result = run_in_child(emu, "emu.set_mode('threaded'); emu.run_reverse_in_block("
                          "torch.zeros(256), torch.zeros(256), 128, sync=False)",
                          TSAN_OPTIONS="halt_on_error=1:exitcode=66")
    assert result.returncode == 66, result.stderr[-2000:]
    assert "WARNING: ThreadSanitizer: data race" in result.stderr
    assert "reverse_in_block_kernel" in result.stderr


# ---- tier 2: csrc/ops/cuda/cuda_ops.cpp over the emulated runtime and cuBLAS ----

OP_CELLS = ["lstm", "lstm-proj", "gru", "rnn_tanh", "rnn_relu"]
OP_CONFIGS = {"padded": {}, "reverse": {"reverse": True}, "packed": {"packed": True},
              "packed-reverse": {"packed": True, "reverse": True}, "no_bias": {"bias": False},
              "no_state": {}}


def _op_args(cell, config_name, dtype, generator):
    from test_ops import make_args

    config = dict(OP_CONFIGS[config_name])
    if cell == "lstm-proj":
        config["proj"] = 3
    args = make_args(cell.split("-")[0], generator, dtype=dtype, steps=5, batch=4,
                     input_size=6, hidden=7, **config)
    if config_name == "no_state":
        args["hx"] = None
        if "cx" in args:
            args["cx"] = None
    return args


def _backward_args(cell, args, results, grads):
    """The backward op's arguments (schemas.cpp order) for a forward's args and results."""
    a = dict(args)
    if cell == "lstm":
        return (*grads, a["input"], a["hx"], a["cx"], a["w_ih"], a["w_hh"], a["w_hr"], results[0],
                results[3], a["batch_sizes"], a["reverse"], True)
    if cell == "gru":
        return (*grads, a["input"], a["hx"], a["w_ih"], a["w_hh"], results[0], results[2],
                a["batch_sizes"], a["reverse"], True)
    return (*grads, a["input"], a["hx"], a["w_ih"], a["w_hh"], results[0], a["batch_sizes"],
            a["reverse"], True)


def _reference_results(cell, args, grads, dtype=torch.float64):
    """Outputs, final states and the gradients of every tensor argument, from
    fastrnn/_reference.py (torch.nn's formulas in torch operators) and autograd, in dtype:
    float64 for the exact values, a half type for torch's own error in it."""
    from test_ops import reference

    cast = {k: (v.detach().to(dtype).requires_grad_() if isinstance(v, torch.Tensor)
                and v.is_floating_point() else v) for k, v in args.items()}
    batch = int(args["batch_sizes"][0]) if args["batch_sizes"] is not None else \
        args["input"].shape[1]
    for state, size in (("hx", args["w_hh"].shape[1]), ("cx", args["w_hh"].shape[0] // 4)):
        if state in cast and cast[state] is None:  # absent: zeros, not differentiated
            cast[state] = torch.zeros(batch, size, dtype=dtype)
    outputs = reference(cell, cast)
    names = [k for k, v in cast.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    grads_in = torch.autograd.grad(outputs, [cast[k] for k in names], [g.to(dtype) for g in grads])
    return list(outputs), dict(zip(names, grads_in))


def _named_grads(cell, args, backward_results):
    """The backward op's results keyed by the argument they belong to."""
    names = (["input", "hx", "cx", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"] if cell == "lstm"
             else ["input", "hx", "w_ih", "w_hh", "b_ih", "b_hh"])
    return {name: grad for name, grad in zip(names, backward_results)
            if args.get(name) is not None}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[1])
@pytest.mark.parametrize("config", list(OP_CONFIGS))
@pytest.mark.parametrize("cell", OP_CELLS)
def test_cuda_op_path_matches_cpu_ops_and_reference(emu, cell, config, dtype, generator):
    """The CUDA ops (glue, driver, cuBLAS calls, step kernels) on host memory, forward and
    backward, against fastrnn's CPU ops and float64 torch.nn formulas: every result fully
    written (allocations are NaN-poisoned), float32/float64 to the CPU ops' precision, float16/
    bfloat16 within DESIGN.md's rule (at most twice the error of torch's own operators in that
    dtype, plus 1e-3)."""
    base = cell.split("-")[0]
    args = _op_args(cell, config, dtype, generator)
    n_results = 3 if base == "lstm" else 2
    cpu_forward = getattr(torch.ops.fastrnn, f"{base}_forward")
    emulated = getattr(emu.ops, f"{base}_forward")(*args.values())
    native = cpu_forward(*args.values())
    grads = [torch.randn(t.shape, generator=generator, dtype=torch.float64).to(dtype)
             for t in native[:n_results]]
    emulated_grads = _named_grads(base, args, getattr(emu.ops, f"{base}_backward")(
        *_backward_args(base, args, emulated, grads)))
    native_grads = _named_grads(base, args, getattr(torch.ops.fastrnn, f"{base}_backward")(
        *_backward_args(base, args, native, grads)))
    exact_outputs, exact_grads = _reference_results(base, args, grads)
    torch_outputs, torch_grads = (_reference_results(base, args, grads, dtype)
                                  if dtype in (torch.float16, torch.bfloat16) else
                                  (exact_outputs, exact_grads))
    pairs = [(f"result {i}", emulated[i], native[i], exact_outputs[i], torch_outputs[i])
             for i in range(n_results)]
    pairs += [(f"grad {k}", emulated_grads[k], native_grads[k], exact_grads[k], torch_grads[k])
              for k in exact_grads]
    for name, ours, cpu, exact, theirs in pairs:
        assert not ours.isnan().any(), f"{name}: unwritten elements"
        if dtype in (torch.float32, torch.float64):
            tolerance = 1e-10 if dtype == torch.float64 else 2e-5
            torch.testing.assert_close(ours, cpu, rtol=tolerance, atol=tolerance, msg=name)
            torch.testing.assert_close(ours.double(), exact, rtol=tolerance, atol=tolerance,
                                       msg=name)
        else:
            scale = max(1.0, exact.abs().max().item())
            ours_error = (ours.double() - exact).abs().max().item()
            torch_error = (theirs.double() - exact).abs().max().item()
            assert ours_error <= 2 * torch_error + 1e-3 * scale, \
                f"{name}: emulated CUDA {ours_error:.3g} vs torch {torch_error:.3g}"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_cuda_op_path_makes_overwriting_and_accumulating_gemms(emu, cell, generator):
    """A forward and backward call both overwrite (beta = 0: the emulated cuBLAS leaves C
    unread, so a poisoned C shows any beta = 1 that should be 0) and accumulate (beta = 1)."""
    args = _op_args(cell, "padded", torch.float32, generator)
    calls, reading = emu.ops.gemm_calls(), emu.ops.gemm_calls_reading_c()
    results = getattr(emu.ops, f"{cell}_forward")(*args.values())
    grads = [torch.ones_like(t) for t in results[:3 if cell == "lstm" else 2]]
    getattr(emu.ops, f"{cell}_backward")(*_backward_args(cell, args, results, grads))
    made, accumulating = emu.ops.gemm_calls() - calls, emu.ops.gemm_calls_reading_c() - reading
    assert 0 < accumulating < made


# ---- the emulated cuBLAS itself ----

COMPUTE_64F, COMPUTE_32F, COMPUTE_TF32 = 70, 68, 77
INVALID_VALUE, NOT_SUPPORTED = 7, 15


def _column_major(matrix):
    """A tensor whose memory is `matrix` in column-major order (leading dimension rows)."""
    return matrix.t().contiguous()


@pytest.mark.parametrize("dtypes", [(torch.float64, torch.float64, COMPUTE_64F),
                                    (torch.float32, torch.float32, COMPUTE_32F),
                                    (torch.float16, torch.float16, COMPUTE_32F),
                                    (torch.float16, torch.float32, COMPUTE_32F),
                                    (torch.bfloat16, torch.bfloat16, COMPUTE_32F),
                                    (torch.bfloat16, torch.float32, COMPUTE_32F)],
                         ids=["64F", "32F", "16F", "16F-32F", "16BF", "16BF-32F"])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True),
                                              (True, True)])
def test_cublas_gemm_matches_matmul(emu, dtypes, trans_a, trans_b, generator):
    ab, c_type, compute = dtypes
    m, n, k = 5, 7, 9
    a = torch.randn(k if trans_a else m, m if trans_a else k, generator=generator,
                    dtype=torch.float64).to(ab)
    b = torch.randn(n if trans_b else k, k if trans_b else n, generator=generator,
                    dtype=torch.float64).to(ab)
    c0 = torch.randn(m, n, generator=generator, dtype=torch.float64).to(c_type)
    op_a = a.double().t() if trans_a else a.double()
    op_b = b.double().t() if trans_b else b.double()
    for beta in (0.0, 0.5):
        c = _column_major(c0)
        if beta == 0:
            c.fill_(float("nan"))  # never read
        status = emu.ops.cublas_gemm_ex(trans_a, trans_b, m, n, k, 2.0, _column_major(a),
                                        a.shape[0], _column_major(b), b.shape[0], beta, c, m,
                                        compute)
        assert status == 0
        expected = 2.0 * op_a @ op_b + beta * c0.double()
        tolerance = {torch.float64: 1e-12, torch.float32: 1e-5}.get(c_type, 2e-2)
        torch.testing.assert_close(c.t().double(), expected, rtol=tolerance, atol=tolerance)


def test_cublas_tf32_rounds_inputs(emu):
    """CUBLAS_COMPUTE_32F_FAST_TF32 multiplies inputs rounded to 10 mantissa bits."""
    a = torch.tensor([[1.0 + 2 ** -12]])
    b = torch.tensor([[1.0]])
    for compute, expected in ((COMPUTE_32F, 1.0 + 2 ** -12), (COMPUTE_TF32, 1.0)):
        c = torch.zeros(1, 1)
        assert emu.ops.cublas_gemm_ex(False, False, 1, 1, 1, 1.0, a, 1, b, 1, 0.0, c, 1,
                                      compute) == 0
        assert c.item() == expected


@pytest.mark.parametrize("case, status", [
    ("lda too small", INVALID_VALUE), ("ldb too small", INVALID_VALUE),
    ("ldc too small", INVALID_VALUE), ("negative k", INVALID_VALUE),
    ("TF32 with half inputs", NOT_SUPPORTED), ("64F compute with 32F", NOT_SUPPORTED),
    ("mixed A and B types", NOT_SUPPORTED)])
def test_cublas_rejects_what_cublas_rejects(emu, case, status):
    m, n, k = 4, 3, 2
    a, b, c = torch.zeros(k, m), torch.zeros(n, k), torch.zeros(n, m)
    lda, ldb, ldc, kk, compute = m, k, m, k, COMPUTE_32F
    if case == "lda too small":
        lda = m - 1
    elif case == "ldb too small":
        ldb = k - 1
    elif case == "ldc too small":
        ldc = m - 1
    elif case == "negative k":
        kk = -1
    elif case == "TF32 with half inputs":
        a, b, compute = a.half(), b.half(), COMPUTE_TF32
    elif case == "64F compute with 32F":
        compute = COMPUTE_64F
    else:
        b = b.double()
    assert emu.ops.cublas_gemm_ex(False, False, m, n, kk, 1.0, a, lda, b, ldb, 0.0, c, ldc,
                                  compute) == status
