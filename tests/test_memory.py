"""Memory (issue 7): what fastrnn saves for backward is at most what torch.nn saves for the same
model; training and inference loops keep RSS flat (no leak); a very long sequence runs in memory
bounded by the tensors that must exist, with no stack growth.

The RSS checks run in a fresh Python process each (tests/memory_probe.py), so nothing else the
test session allocated or cached blurs the numbers. FASTRNN_RELIABILITY_FULL=1 (set by
scripts/reliability.sh) runs the leak check for 10x the steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastrnn
from utils import FASTRNN_PARENT, make_pair, randn

ROOT = Path(__file__).resolve().parents[1]
FULL = os.environ.get("FASTRNN_RELIABILITY_FULL") == "1"


def _probe(*args: str, env: dict | None = None) -> dict:
    """Runs tests/memory_probe.py in a fresh process and returns the JSON it prints last."""
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(
        [FASTRNN_PARENT, str(ROOT / "tests"), environment.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "memory_probe.py"), *args],
                            capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)  # shown with pytest -s: the numbers the closing note reports
    return report


# ---- saved for backward ----

def _saved_bytes(module, x) -> tuple[int, int]:
    """Bytes of the storages autograd saves for one forward call (each storage counted once):
    in all, and without the parameters (which exist anyway)."""
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(x)
    parameters = {p.untyped_storage().data_ptr() for p in module.parameters()}
    total = sum(storages.values())
    return total, total - sum(n for ptr, n in storages.items() if ptr in parameters)


@pytest.mark.parametrize("shape", [dict(steps=20, batch=8, input_size=32, hidden=64, num_layers=2),
                                   dict(steps=50, batch=4, input_size=16, hidden=128,
                                        num_layers=2, bidirectional=True)],
                         ids=["2-layer", "2-layer-bidirectional"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_saved_for_backward_at_most_torch(mode, shape, generator):
    shape = dict(shape)
    steps, batch, input_size, hidden = (shape.pop(k) for k in ("steps", "batch", "input_size", "hidden"))
    reference, fast = make_pair(mode, input_size, hidden, **shape)
    x = randn(generator, steps, batch, input_size).requires_grad_()
    ours, ours_activations = _saved_bytes(fast, x)
    theirs, theirs_activations = _saved_bytes(reference, x)
    print(f"{mode} {shape}: fastrnn/torch saved {ours / theirs:.3f} "
          f"(without parameters {ours_activations / theirs_activations:.3f})")
    assert ours <= theirs
    assert ours_activations <= theirs_activations


# ---- leaks ----

def test_training_loop_keeps_rss_flat():
    """1000 Adam steps of a 2-layer LSTM (H=64, B=8, T=20) with a linear head: RSS after the
    steps within 4 MiB of RSS after warm-up (a leaked workspace would add 200 KiB a step)."""
    steps = 10000 if FULL else 1000
    report = _probe("train", str(steps))
    assert report["growth_bytes"] < 4 * 2**20, report


def test_inference_fast_path_keeps_rss_flat():
    """The C++ inference fast path (Python objects built in C++) leaks neither references nor
    tensors: 1000 no-grad calls, RSS within 4 MiB of RSS after warm-up."""
    report = _probe("infer", str(10000 if FULL else 1000))
    assert report["growth_bytes"] < 4 * 2**20, report
    assert report["refcount_growth"] == 0, report


# ---- a very long sequence ----

@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_long_sequence_runs_in_bounded_memory(mode):
    """T=100000, B=1, H=8: the peak RSS of forward, and of forward+backward, stays within twice
    the bytes of the tensors that must exist (output; with backward also the saved workspace,
    the output gradient and the input gradient) plus 16 MiB, and the main thread's stack does
    not grow (no recursion over time steps)."""
    # Large blocks straight from mmap and back on free, so RSS follows live memory.
    report = _probe("long", mode, env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    for case in report["cases"]:
        bound = 2 * case["must_exist_bytes"] + 16 * 2**20
        assert case["peak_bytes"] <= bound, case
        assert case["stack_growth_bytes"] <= 2**20, case


# ---- the block cache (csrc/cpu/block_cache.h) ----

def test_cpu_blocks_are_reused_resizable_and_released(generator):
    """Outputs of 1 MB or more come from blocks fastrnn keeps after use: a second call of the
    same shapes takes its output block from the cache instead of fresh memory, the results stay
    torch.nn's, the tensors are ordinary (resizable) ones, and fastrnn.empty_cache() frees the
    free blocks."""
    from fastrnn import _C

    reference, fast = make_pair("LSTM", 16, 512, dtype=torch.float32)
    x = randn(generator, 150, 4, 16, dtype=torch.float32)  # output 150 x 4 x 512 floats: 1.2 MB
    fastrnn.empty_cache()
    assert _C.cached_bytes() == 0
    with torch.no_grad():
        expected = reference(x)[0]
        first = fast(x)[0]
        output_block = 2 * 2**20  # 1.2 MB rounded up to the 2 MB granule
        held = _C.cached_bytes()  # the call's scratch, back in the cache; not the output
        first_ptr = first.data_ptr()
        del first
        assert _C.cached_bytes() == held + output_block
        second = fast(x)[0]
    assert _C.cached_bytes() == held  # the output took the same block back
    assert second.data_ptr() == first_ptr
    torch.testing.assert_close(second, expected, rtol=1e-5, atol=1e-6)
    second.resize_(300, 4, 512)  # a storage torch can grow, as torch.nn's outputs
    torch.testing.assert_close(second[:150], expected, rtol=1e-5, atol=1e-6)
    del second
    assert fastrnn.empty_cache() >= held
    assert _C.cached_bytes() == 0
