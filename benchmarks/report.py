"""Outputs of the benchmark suite: a markdown table (stdout), CSV, JSON and a PNG of speedups."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

import fastrnn
from fastrnn.info import cpu_summary

PEER_COLUMNS = (("torch.nn", "torch"), ("onnxruntime", "ort"), ("flashrnn", "flashrnn"))


def machine_header(device: torch.device, threads: int) -> str:
    """The first line of every benchmark run: the machine, fastrnn's kernels on it (instruction
    set, bfloat16 products), torch's bfloat16, versions."""
    if device.type == "cuda":
        machine = f"{torch.cuda.get_device_name(device)}; host CPU {cpu_summary()}"
    else:
        machine = f"{cpu_summary()}; {threads} threads"
    return (f"machine: {machine}; torch {torch.__version__}; fastrnn {fastrnn.__version__} "
            f"(CUDA built {fastrnn._C.cuda_built()})")


def _format(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(rows: list[dict]) -> str:
    peers = [(name, short) for name, short in PEER_COLUMNS if any(r.get(name) for r in rows)]
    header = ["set", "cell", "mode", "dtype", "shape", "unit", "fastrnn"]
    for name, short in peers:
        header += [name, f"x {short}"]
    header += ["GFLOP/s", "% GEMM", "% peak", "saved MB fastrnn / torch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 5 + "---|" + "---:|" * (len(header) - 6)]
    for r in rows:
        cells = [r["set"], r["cell"], r["mode"], r["dtype"], r["shape"], r["unit"],
                 _format(r["fastrnn"])]
        for name, _ in peers:
            speedup = r.get(f"speedup_vs_{name}")
            cells += [_format(r.get(name)), f"{speedup:.2f}x" if speedup else "-"]
        memory = "-"
        if r.get("memory_fastrnn_mb") is not None and r.get("memory_torch.nn_mb") is not None:
            memory = f"{r['memory_fastrnn_mb']:.1f} / {r['memory_torch.nn_mb']:.1f}"
        cells += [_format(r["gflops_fastrnn"], 1), _format(r["gemm_percent_fastrnn"], 0),
                  _format(r.get("fma_percent_fastrnn"), 0), memory]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_files(rows: list[dict], metadata: dict, out: Path, plot: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    csv_path = out / "results.csv"
    fields = sorted({key for r in rows for key in r})
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    written.append(csv_path)
    json_path = out / "results.json"
    json_path.write_text(json.dumps({"metadata": metadata, "rows": rows}, indent=2))
    written.append(json_path)
    if plot:
        png = plot_speedups(rows, metadata, out / "speedup.png")
        if png is not None:
            written.append(png)
    return written


def plot_speedups(rows: list[dict], metadata: dict, path: Path) -> Path | None:
    """A dot plot of fastrnn's speedup: one line per shape and mode, one marker per cell and
    dtype, log scale, one panel per peer. None without matplotlib (an optional extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    peers = [name for name, _ in PEER_COLUMNS if any(r.get(f"speedup_vs_{name}") for r in rows)]
    lines = list(dict.fromkeys(f"{r['set']} {r['mode']} {r['shape']}" for r in rows))
    markers = {"LSTM": "o", "GRU": "s", "RNN": "^"}
    colors = {"fp32": "tab:blue", "bf16": "tab:orange", "fp16": "tab:green"}
    fig, axes = plt.subplots(1, len(peers), figsize=(6 * len(peers), 0.3 * len(lines) + 1.6),
                             sharey=True, squeeze=False)
    for ax, peer in zip(axes[0], peers):
        for r in rows:
            value = r.get(f"speedup_vs_{peer}")
            if value:
                ax.scatter(value, lines.index(f"{r['set']} {r['mode']} {r['shape']}"),
                           marker=markers.get(r["cell"], "o"), color=colors.get(r["dtype"], "gray"),
                           s=28, alpha=0.85)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"{peer} time / fastrnn time (> 1: fastrnn faster)")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0][0].set_yticks(range(len(lines)))
    axes[0][0].set_yticklabels(lines, fontsize=7)
    axes[0][0].invert_yaxis()
    handles = ([plt.Line2D([], [], marker=m, linestyle="", color="gray", label=c) for c, m in markers.items()]
               + [plt.Line2D([], [], marker="o", linestyle="", color=c, label=d) for d, c in colors.items()
                  if any(r["dtype"] == d for r in rows)])
    axes[0][-1].legend(handles=handles, fontsize=7, loc="lower right")
    fig.suptitle(f"fastrnn speedup on {metadata.get('device_name', '')} "
                 f"({metadata.get('threads', '?')} threads)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
