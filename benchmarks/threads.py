"""How fastrnn scales with torch's intra-op threads: the same call at 1 thread and at N threads,
timed in alternating order in one run (so the machine's drift hits both alike):

    python -m benchmarks.threads [--threads 2] [--repeats 5] [--sets fastrnns deepbench multilayer]

Rows with B >= 32 (issue 6's target: N=2 at least 1.6x one thread), float32, the sets' inference
and training cases; speedup = time at 1 thread / time at N threads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.peers import FastRNN, Workload
from benchmarks.report import machine_header
from benchmarks.shapes import cases


def timed(call, threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sets", nargs="+", default=["fastrnns", "deepbench", "multilayer"])
    parser.add_argument("--cells", nargs="+", default=["LSTM", "GRU", "RNN"])
    parser.add_argument("--min-batch", type=int, default=32)
    args = parser.parse_args(argv)
    counts = (1, args.threads)
    print(machine_header(torch.device("cpu"), args.threads))
    print(f"float32; fastrnn at 1 and {args.threads} threads, alternating")
    print(f"| set | cell | mode | shape | 1 thread ms | {args.threads} threads ms | speedup |")
    print("|---|---|---|---|---:|---:|---:|")
    for set_name in args.sets:
        for case in cases(set_name, "cpu"):
            if case.batch < args.min_batch or case.mode not in ("inference", "training"):
                continue
            for cell in args.cells:
                runner = FastRNN().runner(Workload(cell, case, torch.device("cpu"), torch.float32))
                for count in counts:  # warm up at both counts
                    timed(runner.call, count)
                times: dict[int, list[float]] = {count: [] for count in counts}
                for round_index in range(args.repeats):
                    for count in (counts if round_index % 2 == 0 else counts[::-1]):
                        times[count].append(timed(runner.call, count))
                one, many = (statistics.median(times[count]) for count in counts)
                print(f"| {set_name} | {cell} | {case.mode} | {case.label} | {one * 1e3:.3f} "
                      f"| {many * 1e3:.3f} | {one / many:.2f}x |")
    torch.set_num_threads(args.threads)


if __name__ == "__main__":
    main()
