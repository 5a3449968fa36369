"""What this fastrnn is and what it can run on: ``python -m fastrnn.info`` (``--json`` for a
machine-readable copy).

Prints fastrnn's and torch's versions, how the extension was built (C++ compiler, the torch
headers it was compiled against, OpenMP, sanitizers; for CUDA builds nvcc's version, the
``TORCH_CUDA_ARCH_LIST`` setup.py used and the architectures nvcc compiled), the CPU (model,
the features the kernels' choice reads), the instruction set and GEMM the kernels use, whether
bfloat16 calls use AVX512_BF16 products (and why not), whether torch itself has native bfloat16
on this CPU, and which backends are usable, with the reason when one is not. A backend counts as
usable only after a small LSTM forward has run on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from typing import Any

import torch

import fastrnn
from fastrnn import _C

__all__ = ["bf16_products", "collect", "cpu_model", "cpu_summary", "main", "torch_bfloat16_native"]


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers where /proc/cpuinfo has them
    ("AMD EPYC" alone names both a Zen 3 and a Zen 4)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def torch_bfloat16_native() -> bool:
    """Whether torch has native bfloat16 on this CPU: oneDNN's bfloat16 kernels, which need
    AVX-512 (torch.ops.mkldnn._is_mkldnn_bf16_supported). Without them torch's bfloat16 matmul
    takes a generic path (0.4 GFLOP/s on 2 Zen 3 cores) and torch.nn's LSTM under CPU
    autocast fails ("could not create a primitive descriptor")."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def bf16_products() -> str:
    """What fastrnn's bfloat16 calls multiply with on this CPU: "avx512_bf16", or "float32 (...)"
    with the reason they do not use AVX512_BF16."""
    if _C.cpu_bf16_products():
        return "avx512_bf16"
    if not dict(_C.cpu_features()).get("avx512bf16", False):
        return "float32 (this CPU has no AVX512_BF16)"
    if _C.cpu_isa() != "avx512":
        return f"float32 (kernels lowered to {_C.cpu_isa()} by FASTRNN_CPU_ISA)"
    if os.environ.get("FASTRNN_CPU_BF16") == "0":
        return "float32 (FASTRNN_CPU_BF16=0)"
    return "float32"


def _try_lstm(device: str) -> str | None:
    """Runs a tiny fastrnn.LSTM forward on ``device``; None when it worked, else the error."""
    try:
        lstm = fastrnn.LSTM(3, 4, device=device)
        with torch.no_grad():
            output, _ = lstm(torch.randn(2, 1, 3, device=device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if not bool(torch.isfinite(output).all()):
            return "a test LSTM forward gave non-finite values"
    except Exception as error:  # reported, not raised: this is a diagnostic tool
        return f"a test LSTM forward failed: {type(error).__name__}: {error}"
    return None


def _arch_covers(arch_list: str, capability: tuple[int, int]) -> bool:
    """Whether a TORCH_CUDA_ARCH_LIST ("8.0;8.6;9.0+PTX") has code for a device: a cubin of
    the same major and no higher minor, or PTX of an architecture no higher than the device.
    Entries it cannot read (named ones such as "Hopper") count as covering: the test LSTM
    forward that follows decides."""
    for entry in re.split(r"[;\s]+", arch_list.strip()):
        match = re.fullmatch(r"(\d+)\.(\d+)[af]?(\+PTX)?", entry)
        if match is None:
            return True
        major, minor = int(match[1]), int(match[2])
        if major == capability[0] and minor <= capability[1]:
            return True
        if match[3] and (major, minor) <= capability:
            return True
    return False


def _cuda_backend(build: dict[str, Any]) -> dict[str, Any]:
    if not build["cuda"]:
        return {"usable": False, "reason": "fastrnn was built without CUDA (a CPU build)"}
    if torch.version.cuda is None:
        return {"usable": False, "reason": f"torch {torch.__version__} has no CUDA (a CPU build)"}
    if not torch.cuda.is_available():
        return {"usable": False, "reason": "no CUDA device (torch.cuda.is_available() is False)"}
    capability = torch.cuda.get_device_capability()
    device = f"{torch.cuda.get_device_name()} (sm_{capability[0]}{capability[1]})"
    arch_list = build["cuda_arch_list"]
    if arch_list and not _arch_covers(arch_list, capability):
        return {"usable": False, "device": device,
                "reason": f"built for TORCH_CUDA_ARCH_LIST={arch_list}, which has no code "
                          f"for sm_{capability[0]}{capability[1]}"}
    failure = _try_lstm("cuda")
    if failure is not None:
        return {"usable": False, "device": device, "reason": failure}
    return {"usable": True, "device": device}


def collect() -> dict[str, Any]:
    """Everything ``python -m fastrnn.info`` prints, as a dict."""
    build = dict(_C.build_info())
    features = dict(_C.cpu_features())
    cpu_failure = _try_lstm("cpu")
    cpu: dict[str, Any] = {"usable": cpu_failure is None}
    if cpu_failure is not None:
        cpu["reason"] = cpu_failure
    return {
        "fastrnn": fastrnn.__version__,
        "fastrnn_path": fastrnn.__file__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "build": build,
        "cpu_model": cpu_model(),
        "cpu_features": features,
        "cpu_isa": _C.cpu_isa(),
        "cpu_isa_detected": _C.cpu_isa_detected(),
        "cpu_gemm": _C.cpu_gemm_backend(),
        "cpu_threads_backend": _C.cpu_threads_backend(),
        "cpu_bf16_products": _C.cpu_bf16_products(),
        "cpu_bf16_products_text": bf16_products(),
        "cpu_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_bf16_native": torch_bfloat16_native(),
        "backends": {"cpu": cpu, "cuda": _cuda_backend(build)},
    }


def _features_text(features: dict[str, bool]) -> str:
    if not features:
        return "none read (not x86-64)"
    present = [name for name, there in features.items() if there]
    absent = [name for name, there in features.items() if not there]
    return " ".join(present) + (f" (no {' '.join(absent)})" if absent else "")


def _torch_bf16_text(native: bool) -> str:
    return "oneDNN" if native else "no oneDNN bfloat16 on this CPU (generic, slow kernels)"


def cpu_summary() -> str:
    """One line naming the CPU, fastrnn's kernels on it and torch's bfloat16, for the headers
    of benchmark runs."""
    return (f"{cpu_model()}; fastrnn kernels {_C.cpu_isa()} (detected {_C.cpu_isa_detected()}), "
            f"bfloat16 products {bf16_products()}, GEMM {_C.cpu_gemm_backend()}, threads "
            f"{_C.cpu_threads_backend()}; "
            f"torch {torch.backends.cpu.get_cpu_capability()}, bfloat16 "
            f"{_torch_bf16_text(torch_bfloat16_native())}")


def _text(info: dict[str, Any]) -> str:
    build = info["build"]
    openmp = build["openmp"]
    lines = [
        f"fastrnn: {info['fastrnn']} ({info['fastrnn_path']})",
        f"torch: {info['torch']} (CUDA {info['torch_cuda'] or 'none'})",
        f"python: {info['python']} on {info['platform']}",
        f"built against torch: {build['torch']}",
        f"compiler: {build['compiler']} (C++ {build['cplusplus']}, "
        f"OpenMP {openmp if openmp is not None else 'off'})",
        f"sanitizers: {', '.join(build['sanitizers']) or 'none'}",
        f"cuda built: {'yes' if build['cuda'] else 'no'}",
    ]
    if build["cuda"]:
        lines += [f"nvcc: {build['nvcc']}",
                  f"cuda arch list: {build['cuda_arch_list']}",
                  f"cuda archs compiled: {build['cuda_archs_compiled']}"]
    lines += [
        f"cpu: {info['cpu_model']}",
        f"cpu features: {_features_text(info['cpu_features'])}",
        f"cpu isa: {info['cpu_isa']} (detected: {info['cpu_isa_detected']})",
        f"cpu gemm: {info['cpu_gemm']}",
        f"cpu step threads: {info['cpu_threads_backend']}",
        f"cpu bfloat16 products: {info['cpu_bf16_products_text']}",
        f"cpu threads: {info['cpu_threads']}",
        f"torch cpu capability: {info['torch_cpu_capability']}",
        f"torch bfloat16: {_torch_bf16_text(info['torch_bf16_native'])}",
    ]
    for name, backend in info["backends"].items():
        state = "usable" if backend["usable"] else f"not usable: {backend['reason']}"
        device = f" [{backend['device']}]" if "device" in backend else ""
        lines.append(f"backend {name}: {state}{device}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastrnn.info", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the fields as JSON")
    args = parser.parse_args(argv)
    info = collect()
    print(json.dumps(info, indent=2) if args.json else _text(info))
    return 0 if info["backends"]["cpu"]["usable"] else 1


if __name__ == "__main__":
    sys.exit(main())
