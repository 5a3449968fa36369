"""fastrnn's benchmark suite: fastrnn against torch.nn and other peers, side by side.

    python -m benchmarks --quick                    # the main job: every cell and mode, < 3 min
    python -m benchmarks                            # every shape set for this device
    python -m benchmarks --sets fastrnns packed --cells LSTM --dtypes float32 bfloat16
    python -m benchmarks --device cuda --sets gpu --dtypes float32 bfloat16 float16
    python -m benchmarks --quick --contended        # the same, with one core kept busy

Each row is one cell, mode, dtype and shape (benchmarks/shapes.py). It shows the median time of
every implementation (ms per call, or us per step for streaming), fastrnn's speedup over each
peer (peer time / fastrnn time), fastrnn's GFLOP/s and its share of the GEMM rate measured on
this device in the same run, and for training the memory kept for backward (CPU: bytes saved by
autograd; CUDA: the step's peak allocation) of fastrnn and torch.nn. Writes results.csv,
results.json and speedup.png (with matplotlib) to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import fastrnn
from benchmarks import measure, report
from benchmarks.peers import FastRNN, TorchNN, Workload, available_peers
from benchmarks.shapes import DEFAULT_SETS, SET_NAMES, cases, without_native_bfloat16
from fastrnn.info import cpu_model, torch_bfloat16_native

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the 'quick' set (every cell and mode), float32 and bfloat16, 5 repeats")
    parser.add_argument("--sets", nargs="+", choices=SET_NAMES)
    parser.add_argument("--cells", nargs="+", default=["LSTM", "GRU", "RNN"],
                        choices=["LSTM", "GRU", "RNN"])
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES))
    parser.add_argument("--modes", nargs="+", choices=["inference", "training", "streaming", "packed"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--peers", nargs="*", default=["onnxruntime", "flashrnn"],
                        help="optional peers to include when available (torch.nn always runs)")
    parser.add_argument("--contended", action="store_true",
                        help="keep one CPU core busy with another process for the whole run "
                             "(as DataLoader workers or a neighbouring service do)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.sets = args.sets or ["quick"]
        args.dtypes = args.dtypes or ["float32", "bfloat16"]
        args.repeats = args.repeats or 5
    args.sets = args.sets or list(DEFAULT_SETS)
    args.dtypes = args.dtypes or (["float32", "bfloat16", "float16"] if args.device == "cuda"
                                  else ["float32", "bfloat16"])
    args.repeats = args.repeats or 7
    return args


def progress(done: int, total: int, label: str) -> None:
    """A progress bar on stderr, when stderr is a terminal (logs stay clean)."""
    if not sys.stderr.isatty():
        return
    width = 24
    filled = width * done // max(1, total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<60.60}")
    sys.stderr.flush()
    if done == total:
        sys.stderr.write("\n")


def run_row(w: Workload, implementations: list, args, gemm: float, fma: float | None) -> dict:
    runners = {impl.name: r for impl in implementations if (r := impl.runner(w)) is not None}
    seconds = measure.medians_in_turn(runners, args.repeats, args.threads)
    streaming = w.case.mode == "streaming"
    scale = 1e6 if streaming else 1e3
    c = w.case
    row = {
        "set": c.set, "cell": w.cell, "mode": c.mode, "dtype": SHORT[str(w.dtype).replace("torch.", "")],
        "device": w.device.type, "shape": c.label, "steps": c.steps, "batch": c.batch,
        "input_size": c.input_size, "hidden": c.hidden, "layers": c.layers,
        "bidirectional": c.bidirectional, "tokens": w.tokens,
        "unit": "us/step" if streaming else "ms",
    }
    for name, value in seconds.items():
        row[name] = value * scale
    flops = measure.flops_per_unit(w)
    for name in ("fastrnn", "torch.nn"):
        gflops = flops / seconds[name] / 1e9
        row[f"gflops_{name.split('.')[0]}"] = gflops
        row[f"gemm_percent_{name.split('.')[0]}"] = 100.0 * gflops / gemm if gemm else None
        row[f"fma_percent_{name.split('.')[0]}"] = 100.0 * gflops / fma if fma else None
    for name in seconds:
        if name != "fastrnn":
            row[f"speedup_vs_{name}"] = seconds[name] / seconds["fastrnn"]
    if c.mode in ("training", "packed"):
        for name in ("fastrnn", "torch.nn"):
            memory = measure.training_memory(runners[name], w.device)
            row[f"memory_{name}_mb"] = memory / 2**20 if memory is not None else None
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    peers, notes = available_peers(device, args.peers, args.threads)
    implementations = [FastRNN(), TorchNN(), *peers]
    # Without native bfloat16 in torch on this CPU, torch.nn's bfloat16 layers run on a generic
    # GEMM (0.4-2 GFLOP/s on 2 cores, seconds a training call): bfloat16 rows are timed on a
    # smaller shape, named in their row, and fastrnn (float32 inside there) is rated against the
    # float32 GEMM.
    slow_bf16 = device.type == "cpu" and not torch_bfloat16_native()
    work = [(cell, without_native_bfloat16(case) if slow_bf16 and dtype == "bfloat16" else case,
             dtype)
            for name in args.sets for case in cases(name, args.device)
            if not args.modes or case.mode in args.modes
            for dtype in args.dtypes for cell in args.cells]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    metadata = {
        "device": args.device, "device_name": device_name, "threads": args.threads,
        "torch": torch.__version__, "fastrnn": fastrnn.__version__,
        "cpu_isa": fastrnn._C.cpu_isa(), "cpu_isa_detected": fastrnn._C.cpu_isa_detected(),
        "cpu_bf16_products": fastrnn._C.cpu_bf16_products(),
        "torch_bf16_native": not slow_bf16 if device.type == "cpu" else None,
        "cpu_gemm": fastrnn._C.cpu_gemm_backend(),
        "cuda_built": fastrnn._C.cuda_built(), "repeats": args.repeats,
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(report.machine_header(device, args.threads))
    busy = measure.BusyCore() if args.contended else None
    if busy is not None:
        metadata["contended"] = busy.describe()
        print(f"contended: {busy.describe()}")
    try:
        rows = run_rows(work, implementations, args, device, notes, metadata, slow_bf16)
    finally:
        if busy is not None:
            busy.stop()
    print(report.markdown(rows))
    written = report.write_files(rows, metadata, args.out, plot=not args.no_plot)
    print(f"\n{len(rows)} rows in {metadata['seconds']:.0f} s; wrote " +
          ", ".join(str(p) for p in written))
    return 0


def run_rows(work, implementations, args, device, notes, metadata, slow_bf16) -> list[dict]:
    for note in notes:
        print(f"peer {note}")
    gemm = {}
    for dtype in args.dtypes:
        small = slow_bf16 and dtype == "bfloat16"
        gemm[dtype] = measure.gemm_rate(device, DTYPES[dtype], args.threads, small=small)
        metadata[f"gemm_gflops_{SHORT[dtype]}"] = gemm[dtype]
    print("GEMM rate (torch.mm): " + ", ".join(f"{SHORT[d]} {g:.1f} GFLOP/s" for d, g in gemm.items()))
    # The cores' float32 FMA peak (a register-only FMA loop in fastrnn's instruction set, on
    # --threads threads): what "% peak" compares fastrnn's float32 rows with.
    fma = measure.fma_peak(device, args.threads)
    if fma is not None:
        metadata["fma_peak_gflops_fp32"] = fma
        print(f"FMA peak ({fastrnn._C.cpu_isa()}, {args.threads} threads, register-only loop): "
              f"fp32 {fma:.1f} GFLOP/s")
    peak = dict(gemm)
    if slow_bf16 and "bfloat16" in args.dtypes:
        peak["bfloat16"] = gemm.get("float32") or measure.gemm_rate(device, torch.float32, args.threads)
        print("bfloat16: torch has no native bfloat16 on this CPU (no oneDNN bfloat16), so "
              "bfloat16 rows run on a smaller shape (a fifth of the steps, a quarter of the "
              "batch; see their shape column), and their % GEMM is of the float32 GEMM rate "
              "(fastrnn computes them in float32 here)")
    started = time.perf_counter()
    rows = []
    for index, (cell, case, dtype) in enumerate(work):
        progress(index, len(work), f"{cell} {case.mode} {SHORT[dtype]} {case.label}")
        rows.append(run_row(Workload(cell, case, device, DTYPES[dtype]), implementations, args,
                            peak[dtype], fma if dtype == "float32" else None))
    progress(len(work), len(work), "done")
    metadata["seconds"] = time.perf_counter() - started
    return rows


if __name__ == "__main__":
    sys.exit(main())
