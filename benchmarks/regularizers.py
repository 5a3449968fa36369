"""What fastrnn's regularizers cost in training (issue 25's target: at most 1.10x the same layer
without them):

    python -m benchmarks.regularizers [--cells LSTM GRU RNN] [--steps 50] [--batch 32]
                                      [--hidden 256] [--p 0.3] [--rounds 15]

Per cell, the same layer (same weights, float32) with no option, ``weight_dropout=p``,
``variational_dropout=p`` and both, each timed forward + backward on one [T, B, H] input, taking
turns as the suite's rows do (benchmarks.measure.medians_in_turn: each timed call right after an
untimed one of the same module, medians of `--rounds`); ratio = the option's time / the plain
layer's (<= 1.10: within the target).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import fastrnn
from benchmarks.measure import medians_in_turn
from benchmarks.peers import Runner
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

        def runner(module: nn.Module) -> Runner:
            def call() -> None:
                module.zero_grad(set_to_none=True)
                module(x)[0].sum().backward()
            return Runner(call, module=module)

        medians = medians_in_turn({name: runner(m) for name, m in modules.items()}, args.rounds,
                                  torch.get_num_threads())
        for name, seconds in medians.items():
            print(f"| {cell} | {name} | {seconds * 1e3:.3f} | {seconds / medians['none']:.2f}x |")


if __name__ == "__main__":
    main()
