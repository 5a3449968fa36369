"""fastrnn and torch.nn timed right after another library's thread pool has run (issue 23):

    python -m benchmarks.after_peer [--cells LSTM GRU RNN] [--modes inference training]
                                    [--steps 50] [--batch 32] [--hidden 256] [--rounds 15]

Each timed call comes right after one of:
- own: an untimed call of the same implementation (as the main suite times);
- onnxruntime: a run of an onnxruntime session (torch.nn's LSTM of the same size, exported, on
  as many intra-op threads as torch has), whose threads keep spinning for a while after a run;
- torch.mm: a 1024 x 1024 float32 product on torch's intra-op threads (MKL on OpenMP), which
  spin after it too (the pool backend's helpers then share the cores with them).
fastrnn and torch.nn take turns in every round; float32; ratio = torch.nn time / fastrnn time in
the same condition (> 1: fastrnn faster). Medians after the first three rounds.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

import fastrnn
from benchmarks.report import machine_header


def onnxruntime_run(model: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], object] | None:
    """A call that runs `model` exported to ONNX in an onnxruntime session, or None without
    onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on batch sizes and RNNs
        torch.onnx.export(model, (x,), buffer, input_names=["x"], dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(buffer.getvalue(), options,
                                           providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: session.run(None, feed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["LSTM", "GRU", "RNN"])
    parser.add_argument("--modes", nargs="+", default=["inference", "training"],
                        choices=["inference", "training"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    T, B, H = args.steps, args.batch, args.hidden
    x = torch.randn(T, B, H)
    matrix = torch.randn(1024, 1024)
    before: dict[str, Callable[[], object] | None] = {"own": None}
    peer = onnxruntime_run(nn.LSTM(H, H).eval(), x, threads)
    if peer is not None:
        before["onnxruntime"] = peer
    before["torch.mm"] = lambda: torch.mm(matrix, matrix)
    print(machine_header(torch.device("cpu"), threads))
    print(f"float32, T{T} B{B} I{H} H{H}; each timed call right after the condition's call")
    print("| cell | mode | after | fastrnn ms | torch.nn ms | x torch |")
    print("|---|---|---|---:|---:|---:|")
    for cell in args.cells:
        torch.manual_seed(0)
        reference = getattr(nn, cell)(H, H)
        fast = getattr(fastrnn, cell)(H, H)
        fast.load_state_dict(reference.state_dict())
        for mode in args.modes:
            inputs = x.clone().requires_grad_(mode == "training")

            def call(module: nn.Module) -> None:
                if mode == "inference":
                    with torch.no_grad():
                        module(inputs)
                else:
                    module(inputs)[0].sum().backward()

            for condition, first in before.items():
                times: dict[str, list[float]] = {"fastrnn": [], "torch.nn": []}
                for _ in range(args.rounds):
                    for name, module in (("fastrnn", fast), ("torch.nn", reference)):
                        first() if first is not None else call(module)
                        start = time.perf_counter()
                        call(module)
                        times[name].append(time.perf_counter() - start)
                ours, theirs = (statistics.median(times[name][3:] or times[name])
                                for name in ("fastrnn", "torch.nn"))
                print(f"| {cell} | {mode} | {condition} | {ours * 1e3:.3f} | {theirs * 1e3:.3f} "
                      f"| {theirs / ours:.2f}x |")


if __name__ == "__main__":
    main()
