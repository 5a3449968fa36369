"""Profile one training step of a fastrnn model: a Chrome trace and the top kernels by time.

    python -m benchmarks.profile --cell LSTM --steps 100 --batch 64 --hidden 512
    python -m benchmarks.profile --device cuda --dtype bfloat16 --nvtx   # under nsys / ncu

Every fastrnn op appears in the trace under its own name (fastrnn::lstm_forward,
fastrnn::lstm_backward, ...). --nvtx also emits an NVTX range per op (torch's emit_nvtx), for
Nsight Systems. Open the trace in chrome://tracing or https://ui.perfetto.dev.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import fastrnn
from benchmarks.report import machine_header

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build(args):
    torch.manual_seed(0)
    module = getattr(fastrnn, args.cell)(args.input or args.hidden, args.hidden,
                                         num_layers=args.layers, bidirectional=args.bidirectional)
    module.to(args.device, DTYPES[args.dtype]).train()
    x = torch.randn(args.steps, args.batch, args.input or args.hidden, device=args.device,
                    dtype=DTYPES[args.dtype], requires_grad=True)

    def step():
        module(x)[0].float().sum().backward()
    return step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="LSTM", choices=["LSTM", "GRU", "RNN"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--input", type=int, default=0, help="default: hidden")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--trace", type=Path, default=Path("benchmarks/results/trace.json"))
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--nvtx", action="store_true", help="NVTX ranges per op (CUDA)")
    args = parser.parse_args(argv)

    step = build(args)
    for _ in range(2):  # warm-up: allocations, handles, first-call costs
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    nvtx = torch.autograd.profiler.emit_nvtx() if args.nvtx and args.device == "cuda" else None
    with profile(activities=activities, record_shapes=True) as prof:
        if nvtx is not None:
            with nvtx:
                step()
        else:
            step()
        if args.device == "cuda":
            torch.cuda.synchronize()
    args.trace.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(args.trace))
    sort = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    print(machine_header(torch.device(args.device), torch.get_num_threads()))
    print(prof.key_averages().table(sort_by=sort, row_limit=args.top))
    print(f"Chrome trace: {args.trace}")


if __name__ == "__main__":
    main()
