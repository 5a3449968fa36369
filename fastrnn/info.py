"""What this fastrnn is and what it can run on: ``python -m fastrnn.info`` (``--json`` for a
machine-readable copy).

Prints fastrnn's and torch's versions, how the extension was built (C++ compiler, the torch
headers it was compiled against, OpenMP, sanitizers; for CUDA builds nvcc's version, the
``TORCH_CUDA_ARCH_LIST`` setup.py used and the architectures nvcc compiled), the CPU instruction
set and GEMM the kernels use, and which backends are usable, with the reason when one is not.
A backend counts as usable only after a small LSTM forward has run on it.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from typing import Any

import torch

import fastrnn
from fastrnn import _C

__all__ = ["collect", "main"]


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
        "cpu_isa": _C.cpu_isa(),
        "cpu_isa_detected": _C.cpu_isa_detected(),
        "cpu_gemm": _C.cpu_gemm_backend(),
        "cpu_bf16_products": _C.cpu_bf16_products(),
        "cpu_threads": torch.get_num_threads(),
        "backends": {"cpu": cpu, "cuda": _cuda_backend(build)},
    }


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
        f"cpu isa: {info['cpu_isa']} (detected: {info['cpu_isa_detected']})",
        f"cpu gemm: {info['cpu_gemm']}",
        f"cpu bfloat16 products: {'avx512_bf16' if info['cpu_bf16_products'] else 'float32'}",
        f"cpu threads: {info['cpu_threads']}",
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
