"""Named shape sets of the benchmark suite.

A case is one shape in one mode:
    inference   eval, no grad, whole sequence
    training    forward + backward of the whole sequence
    streaming   one time step per module call, state carried over, as an online model runs
                (B = 1) or a decoder steps a small batch (B = 8); timed per step, module call
                included
    packed      training on a PackedSequence whose lengths are uniform in [T/2, T]
Sets are sized for the device: a 2-core CPU gets shapes that time in seconds, a GPU larger ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MODES = ("inference", "training", "streaming", "packed")


@dataclass(frozen=True)
class Case:
    set: str
    mode: str
    steps: int
    batch: int
    input_size: int
    hidden: int
    layers: int = 1
    bidirectional: bool = False

    @property
    def label(self) -> str:
        stack = f" L{self.layers}{'bi' if self.bidirectional else ''}" if self.layers > 1 or self.bidirectional else ""
        return f"T{self.steps} B{self.batch} I{self.input_size} H{self.hidden}{stack}"


def _both(set_name: str, shapes, modes=("inference", "training"), **kw) -> list[Case]:
    return [Case(set_name, mode, *shape, **kw) for shape in shapes for mode in modes]


def cases(set_name: str, device: str) -> list[Case]:
    gpu = device == "cuda"
    if set_name == "quick":  # every mode, small enough for the 3-minute main job
        shape = (50, 32, 256, 256)
        return (_both("quick", [shape], ("inference", "training", "packed"))
                + [Case("quick", "streaming", 64, 1, 256, 256)])
    if set_name == "fastrnns":  # PyTorch's benchmarks/fastrnns default
        return _both("fastrnns", [(100, 64, 512, 512)])
    if set_name == "deepbench":  # a DeepBench-style training subset (T, B, H), I = H
        shapes = ([(25, 32, 512), (25, 64, 1024), (50, 32, 1760), (25, 16, 2048)] if gpu
                  else [(25, 16, 512), (25, 32, 512), (25, 16, 1024)])
        return [Case("deepbench", "training", t, b, h, h) for t, b, h in shapes]
    if set_name == "streaming":  # one step per call: B = 1, and a small batch
        return ([Case("streaming", "streaming", 100, 1, h, h) for h in (128, 256, 512)]
                + [Case("streaming", "streaming", 100, 8, 256, 256)])
    if set_name == "batch1":  # B = 1, whole sequence
        return _both("batch1", [(100, 1, h, h) for h in (128, 256)])
    if set_name == "small":  # small hidden, long sequences
        return _both("small", [(1000, 8, 64, 64), (500, 16, 128, 128)])
    if set_name == "packed":
        return [Case("packed", "packed", 100, b, h, h) for b, h in ((32, 256), (64, 512))]
    if set_name == "multilayer":  # 2 layers, bidirectional
        return _both("multilayer", [(100, 32, 256, 256)], layers=2, bidirectional=True)
    if set_name == "gpu":
        if not gpu:
            return []
        return _both("gpu", [(100, 1, 256, 256), (100, 64, 512, 512), (200, 128, 1024, 1024),
                             (100, 256, 1024, 1024), (1024, 16, 768, 768), (512, 64, 2048, 2048)])
    if set_name == "smoke":  # tiny, for the test suite
        return (_both("smoke", [(6, 3, 8, 8)], ("inference", "training", "packed"))
                + [Case("smoke", "streaming", 4, 1, 8, 8)])
    raise ValueError(f"unknown shape set {set_name!r}; choose from {', '.join(SET_NAMES)}")


def without_native_bfloat16(case: Case) -> Case:
    """The shape a bfloat16 row is timed on where torch has no native bfloat16 on the CPU: a
    fifth of the steps and a quarter of the batch (a twentieth of the work). torch.nn's bfloat16
    layers there run on a generic GEMM at 0.4-2 GFLOP/s: the quick set's training rows would
    take about a second a call, and --quick well over its 3 minutes."""
    return replace(case, steps=max(4, case.steps // 5), batch=max(1, case.batch // 4))


SET_NAMES = ("quick", "fastrnns", "deepbench", "streaming", "batch1", "small", "packed",
             "multilayer", "gpu", "smoke")
DEFAULT_SETS = ("fastrnns", "deepbench", "streaming", "batch1", "small", "packed", "multilayer", "gpu")
