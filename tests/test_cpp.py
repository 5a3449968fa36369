"""The developer CMake build (CMakeLists.txt) still configures, builds and passes its C++ test:
the step kernels of every instruction set against double precision and finite differences,
and the recurrence driver on a double test backend against finite differences."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_build_and_ctest(tmp_path):
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    for command in (["cmake", "-S", str(ROOT), "-B", str(tmp_path), *generator],
                    ["cmake", "--build", str(tmp_path), "--parallel", "2"],
                    ["ctest", "--test-dir", str(tmp_path), "--output-on-failure"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
