"""The main job: swap torch.nn's RNN modules for fastrnn's on one shape and time both.

    python -m benchmarks.quick                       # LSTM, GRU, RNN at T=100, B=64, I=H=512
    python -m benchmarks.quick --cells LSTM --steps 50 --batch 32 --hidden 256
    python -m benchmarks.quick --packed --batch 32 --input 256 --hidden 256

With --packed the input is a PackedSequence (enforce_sorted=False) whose lengths are drawn
uniformly from [T/2, T] (seeded), and FLOPs count the real tokens only. --device cuda compares
with torch.nn's cuDNN path (torch.utils.benchmark synchronizes the GPU around each run);
--dtype picks float32, bfloat16 or float16 for weights and data.

For each cell it times inference forward (eval, no grad) and training forward+backward, with
torch.nn and fastrnn holding the same weights, measured alternately (torch, fastrnn, fastrnn,
torch, ...) so drifts in machine speed hit both alike. Prints median milliseconds, the speedup
(torch time / fastrnn time) and achieved GFLOP/s, counting 2*T*B*gates*H*(I+H) FLOPs for a
forward and three times that for forward+backward.
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils import benchmark

import fastrnn
from fastrnn import _C

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def alternate_medians(runs: dict[str, benchmark.Timer], repeats: int) -> dict[str, float]:
    """Median seconds of single runs of each timer, taken in alternating order."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for name in names:  # warm-up
        runs[name].timeit(1)
    for i in range(repeats):
        for name in (names if i % 2 == 0 else names[::-1]):
            times[name].append(runs[name].timeit(1).median)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=["LSTM", "GRU", "RNN"], choices=list(GATES))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--input", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--packed", action="store_true",
                        help="PackedSequence input with lengths uniform in [T/2, T]")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.set_num_threads(args.threads)
    T, B, I, H = args.steps, args.batch, args.input, args.hidden

    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{cpu_name()}, {args.threads} threads")
    print(f"machine: {where}; torch {torch.__version__}; fastrnn {fastrnn.__version__} "
          f"(CPU kernels: {_C.cpu_isa()}, GEMM: {_C.cpu_gemm_backend()}, CUDA built: {_C.cuda_built()})")
    lengths = torch.randint(T // 2, T + 1, (B,), generator=torch.Generator().manual_seed(0))
    tokens = int(lengths.sum()) if args.packed else T * B
    layout = (f"packed, lengths uniform in [{T // 2}, {T}] ({tokens} of {T * B} tokens)"
              if args.packed else "padded")
    print(f"shape: T={T} B={B} I={I} H={H}, {layout}, {args.dtype} on {args.device}, 1 layer; "
          f"median of {args.repeats} alternating runs\n")
    print("| cell | mode | torch.nn ms | fastrnn ms | speedup | torch.nn GFLOP/s | fastrnn GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for cell in args.cells:
        torch.manual_seed(0)
        reference = getattr(nn, cell)(I, H).to(device, dtype)
        fast = getattr(fastrnn, cell)(I, H).to(device, dtype)
        fast.load_state_dict(reference.state_dict())
        x = torch.randn(T, B, I, device=device, dtype=dtype)
        x_grad = x.clone().requires_grad_()
        if args.packed:
            x = pack_padded_sequence(x, lengths, enforce_sorted=False)
            x_grad = x._replace(data=x.data.clone().requires_grad_())  # a leaf: one graph per run
        flops = 2 * tokens * GATES[cell] * H * (I + H)
        modes = {
            "inference fwd": ("with torch.no_grad(): m(x)", x, flops, False),
            "training fwd+bwd": ("out = m(x)[0]; (out if isinstance(out, torch.Tensor) "
                                 "else out.data).sum().backward()", x_grad, 3 * flops, True),
        }
        for mode, (stmt, data, mode_flops, train) in modes.items():
            for module in (reference, fast):
                module.train(train)
            timers = {name: benchmark.Timer(stmt, globals={"m": module, "x": data, "torch": torch},
                                            num_threads=args.threads)
                      for name, module in (("torch", reference), ("fastrnn", fast))}
            median = alternate_medians(timers, args.repeats)
            t_ref, t_fast = median["torch"], median["fastrnn"]
            print(f"| {cell} | {mode} | {t_ref * 1e3:.2f} | {t_fast * 1e3:.2f} | "
                  f"{t_ref / t_fast:.2f}x | {mode_flops / t_ref / 1e9:.1f} | "
                  f"{mode_flops / t_fast / 1e9:.1f} |", flush=True)


if __name__ == "__main__":
    main()
