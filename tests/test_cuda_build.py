"""The torch-free CUDA sources compile with nvcc for sm_80 and sm_90 (compile only), so CUDA
code is checked on machines with no GPU and no CUDA torch, and ptxas's report of every kernel
stays within the register budget with no spills and no stack. Skips only where nvcc is absent."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
# The flags torch's CUDAExtension builds with that matter to the sources (no implicit half
# conversions), plus the architectures setup.py defaults to.
FLAGS = ["-std=c++20", "-O3", "--expt-relaxed-constexpr", "-D__CUDA_NO_HALF_OPERATORS__",
         "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
         "-D__CUDA_NO_HALF2_OPERATORS__", "-gencode", "arch=compute_80,code=sm_80",
         "-gencode", "arch=compute_90,code=sm_90", "-Werror", "all-warnings",
         "-Xptxas", "-v,-warn-spills,-warn-lmem-usage"]
# Registers per thread a step kernel may use: at most 48 (the most any uses on 2026-12-07,
# sm_80 and sm_90, nvcc 13.0) leaves 1280 threads, five blocks of 256, resident per SM.
REGISTER_BUDGET = 48


def test_there_are_cuda_sources():
    assert len(SOURCES) >= 4


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_nvcc_compiles(source, tmp_path):
    command = ["nvcc", *FLAGS, f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}", "-c",
               str(source), "-o", str(tmp_path / (source.stem + ".o"))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / (source.stem + ".o")).stat().st_size > 0
    report = ptxas_report(result.stdout + result.stderr)
    if "__global__" not in source.read_text() and "step_kernels.cuh" not in source.read_text():
        return  # no kernels (build_info.cu)
    assert len(report) >= 2 * 9, report  # every kernel, for both architectures
    for (kernel, arch), (registers, stack, spills) in report.items():
        assert registers <= REGISTER_BUDGET, f"{kernel} (sm_{arch}): {registers} registers"
        assert stack == 0 and spills == 0, f"{kernel} (sm_{arch}): {stack} B stack, {spills} B spilled"
    assert "warning" not in (result.stdout + result.stderr).lower()


def ptxas_report(log: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """{(kernel, arch): (registers, stack bytes, spilled bytes)} from ptxas -v."""
    report = {}
    pattern = re.compile(
        r"Compiling entry function '(?P<kernel>[^']+)' for 'sm_(?P<arch>\d+)'.*?"
        r"(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, "
        r"(?P<loads>\d+) bytes spill loads.*?Used (?P<registers>\d+) registers", re.S)
    for match in pattern.finditer(log):
        report[(match["kernel"], match["arch"])] = (
            int(match["registers"]), int(match["stack"]),
            int(match["stores"]) + int(match["loads"]))
    return report
