"""Does packed training cost what its real tokens cost? fastrnn on a PackedSequence (lengths
uniform in [T/2, T], the packed set's) against fastrnn on the same batch padded to T, timed in
turn in one run (benchmarks/measure.py):

    python -m benchmarks.tokens [--threads 2] [--repeats 7] [--cells LSTM GRU RNN]

ratio = packed time / (padded time * real tokens / (T * B)); 1.0 means time exactly in
proportion to the tokens computed (issue 6's target: at most 1.1).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.measure import medians_in_turn
from benchmarks.peers import FastRNN, Workload
from benchmarks.report import machine_header
from benchmarks.shapes import cases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cells", nargs="+", default=["LSTM", "GRU", "RNN"])
    parser.add_argument("--set", default="packed", help="shape set whose packed cases run")
    args = parser.parse_args(argv)
    print(machine_header(torch.device("cpu"), args.threads))
    print(f"{args.threads} threads; float32; fastrnn packed vs padded training")
    print("| cell | shape | padded ms | packed ms | token fraction | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for case in (c for c in cases(args.set, "cpu") if c.mode == "packed"):
        for cell in args.cells:
            packed = Workload(cell, case, torch.device("cpu"), torch.float32)
            padded = dataclasses.replace(packed, case=dataclasses.replace(case, mode="training"))
            assert torch.equal(padded.x, packed.x)  # same data; the padded run computes every step
            runners = {"padded": FastRNN().runner(padded), "packed": FastRNN().runner(packed)}
            times = medians_in_turn(runners, args.repeats, args.threads)
            fraction = packed.tokens / (case.steps * case.batch)
            ratio = times["packed"] / (times["padded"] * fraction)
            print(f"| {cell} | {case.label} | {times['padded'] * 1e3:.3f} | {times['packed'] * 1e3:.3f} "
                  f"| {fraction:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
