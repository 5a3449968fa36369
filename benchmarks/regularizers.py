"""What fastrnn's regularizers cost in training (issue 25's target: at most 1.10x the same layer
without them):

    python -m benchmarks.regularizers [--cells LSTM GRU RNN] [--steps 50] [--batch 32]
                                      [--hidden 256] [--p 0.3] [--rounds 15]

Per cell, the same layer (same weights, float32) with no option, ``weight_dropout=p``,
``variational_dropout=p`` and both, each timed forward + backward on one [T, B, H] input; the
four take turns in every round, each timed call right after an untimed one of the same module.
Medians after the first three rounds; ratio = the option's time / the plain layer's (< 1.10:
within the target).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import fastrnn
from benchmarks.report import machine_header

TARGET = 1.10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["LSTM", "GRU", "RNN"],
                        choices=["LSTM", "GRU", "RNN"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--p", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    T, B, H, p = args.steps, args.batch, args.hidden, args.p
    print(machine_header(torch.device("cpu"), torch.get_num_threads()))
    print(f"float32 training (forward + backward), T{T} B{B} I{H} H{H}, p={p}; "
          f"target: at most {TARGET:.2f}x the plain layer")
    print("| cell | option | ms | x plain |")
    print("|---|---|---:|---:|")
    options = {"none": {}, "weight_dropout": {"weight_dropout": p},
               "variational_dropout": {"variational_dropout": p},
               "both": {"weight_dropout": p, "variational_dropout": p}}
    for cell in args.cells:
        torch.manual_seed(0)
        plain = getattr(fastrnn, cell)(H, H)
        modules: dict[str, nn.Module] = {}
        for name, kwargs in options.items():
            modules[name] = getattr(fastrnn, cell)(H, H, **kwargs)
            modules[name].load_state_dict(plain.state_dict())
        x = torch.randn(T, B, H, requires_grad=True)

        def call(module: nn.Module) -> None:
            module.zero_grad(set_to_none=True)
            module(x)[0].sum().backward()

        times: dict[str, list[float]] = {name: [] for name in modules}
        for _ in range(args.rounds):
            for name, module in modules.items():
                call(module)
                start = time.perf_counter()
                call(module)
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t[3:] or t) for name, t in times.items()}
        for name, seconds in medians.items():
            print(f"| {cell} | {name} | {seconds * 1e3:.3f} | {seconds / medians['none']:.2f}x |")


if __name__ == "__main__":
    main()
