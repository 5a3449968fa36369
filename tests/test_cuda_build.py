"""The torch-free CUDA sources compile with nvcc for sm_80 and sm_90 (compile only), so CUDA
code is checked on machines with no GPU and no CUDA torch. Skips only where nvcc is absent."""

from __future__ import annotations

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
         "-gencode", "arch=compute_90,code=sm_90", "-Werror", "all-warnings"]


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
