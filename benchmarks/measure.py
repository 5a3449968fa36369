"""Timing, FLOPs, the device's GEMM rate and memory, for the benchmark suite.

Timings use torch.utils.benchmark (which sets the thread count and synchronizes CUDA around
each run) and take the median of single runs made in turn (A B C A B C ...), each right after
an untimed run of the same implementation, so a drift in the machine's speed hits every
implementation alike and none is timed in the wake of another; ratios come from one run.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

import torch
from torch.utils import benchmark

from benchmarks.peers import GATES, Runner, Workload


def medians_in_turn(runners: dict[str, Runner], repeats: int, threads: int,
                      warmup: int = 2) -> dict[str, float]:
    """Median seconds per time step (streaming) or per call (everything else) of each runner.

    Each timed call comes right after an untimed call of the same runner: every implementation
    is timed as it runs back to back (weights in cache, thread pool awake), and what the
    previous runner left behind (its data in cache, onnxruntime's threads still spinning) lands
    on the untimed call, after settle() has waited out threads still busy. Measured per
    predecessor without the untimed call (batch-1 LSTM H256, 2 threads):
    onnxruntime took 0.95 ms after itself and 1.76 ms after fastrnn; torch.nn's streaming GRU
    H256 8.9 ms after itself and 16.9 ms after onnxruntime. The earlier order (A B C, C B A,
    one timed call each) gave the first and last runner a run after itself in every other round
    and the middle one never."""
    timers = {name: benchmark.Timer("call()", globals={"call": r.call}, num_threads=threads)
              for name, r in runners.items()}
    for timer in timers.values():
        for _ in range(warmup):
            timer.timeit(1)
        settle()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name in runners:
            timers[name].timeit(1)
            times[name].append(timers[name].timeit(1).median)
            settle()
    return {name: statistics.median(t) / runners[name].steps_per_call for name, t in times.items()}


def settle(limit: float = 0.5) -> None:
    """Returns once no other thread of this process has been busy for 5 ms (at most `limit`
    seconds). onnxruntime's pool threads keep spinning after a session run: measured after a
    streaming LSTM H256 call (100 runs), one of them burned a core for 40 ms, and a torch.nn or
    fastrnn call in that time shared 2 cores among 3 busy threads (streaming rows came out 3x
    slow, in some processes and not others)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        busy = time.process_time()  # all threads' CPU time; this one sleeps
        time.sleep(0.005)
        if time.process_time() - busy < 0.0005:
            return


class BusyCore:
    """Another process spinning on one CPU core (the last one this process may run on) until
    stop(): the machine as a training job with DataLoader workers, or a shared server, sees it.
    Every implementation is timed under it alike; settle() looks at this process only, so it
    does not wait for it."""

    def __init__(self) -> None:
        self.cpu = max(os.sched_getaffinity(0))
        code = (f"import os\nos.sched_setaffinity(0, {{{self.cpu}}})\n"
                "while True:\n    pass\n")
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
        time.sleep(0.2)  # running and pinned before the first timing

    def describe(self) -> str:
        return f"a busy process (pid {self.process.pid}) spinning on CPU {self.cpu}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def forward_flops(w: Workload, tokens: int | None = None) -> float:
    """2 * tokens * gates * H * (I + H) summed over layers and directions."""
    c = w.case
    tokens = w.tokens if tokens is None else tokens
    directions = 2 if c.bidirectional else 1
    total = 0.0
    for layer in range(c.layers):
        layer_input = c.input_size if layer == 0 else c.hidden * directions
        total += 2.0 * tokens * GATES[w.cell] * c.hidden * (layer_input + c.hidden) * directions
    return total


def flops_per_unit(w: Workload) -> float:
    """FLOPs of one timed unit: a forward, a forward+backward (3x), or one streaming step."""
    mode = w.case.mode
    if mode == "streaming":
        return forward_flops(w, tokens=w.case.batch)
    forward = forward_flops(w)
    return 3 * forward if mode in ("training", "packed") else forward


def gemm_rate(device: torch.device, dtype: torch.dtype, threads: int, small: bool = False) -> float:
    """GFLOP/s of torch.mm on this device and dtype (the best of two shapes), for '% of peak'.
    small: one 256-cube instead, for a dtype torch has no fast GEMM for here (a CPU without
    native bfloat16: its 2048 x 1024 x 2048 product alone takes 20 s there)."""
    best = 0.0
    shapes = ((256, 256, 256),) if small else ((2048, 1024, 2048), (1024, 1024, 4096))
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        timer = benchmark.Timer("torch.mm(a, b)", globals={"torch": torch, "a": a, "b": b},
                                num_threads=threads)
        seconds = timer.blocked_autorange(min_run_time=0.5).median
        best = max(best, 2.0 * m * k * n / seconds / 1e9)
    return best


def fma_peak(device: torch.device, threads: int) -> float | None:
    """The float32 FMA peak of `threads` cores in GFLOP/s (fastrnn._C.cpu_fma_peak: a loop of
    independent FMAs that never leave the registers, in the instruction set fastrnn's kernels
    use), or None on CUDA."""
    if device.type != "cpu":
        return None
    import fastrnn
    return fastrnn._C.cpu_fma_peak(threads)


def training_memory(runner: Runner, device: torch.device) -> int | None:
    """Bytes a training step keeps: on CUDA the step's peak allocation above what was allocated
    before it; on the CPU the bytes autograd saves for backward (distinct storages)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        runner.call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        runner.call()
    return sum(storages.values())
