"""``python -m fastrnn.info``: run as a user runs it (a subprocess), its fields checked against
what this process sees of the same build."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import fastrnn
from fastrnn import _C
from fastrnn.info import _arch_covers


def _run_info(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "fastrnn.info", *args], capture_output=True,
                            text=True, timeout=300, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


@pytest.fixture(scope="module")
def text() -> str:
    return _run_info()


@pytest.fixture(scope="module")
def info() -> dict:
    return json.loads(_run_info("--json"))


def test_versions(text, info):
    fields = _fields(text)
    assert fields["fastrnn"].startswith(f"{fastrnn.__version__} (")
    assert fields["torch"].startswith(f"{torch.__version__} (")
    assert info["fastrnn"] == fastrnn.__version__ and info["torch"] == torch.__version__
    # the extension was compiled against the torch it runs with (it has no stable ABI)
    assert fields["built against torch"] == torch.__version__.split("+")[0]


def test_compiler_is_the_one_that_built_the_extension(text, info):
    compiler = _fields(text)["compiler"]
    assert re.match(r"(gcc|clang) \d+\.\d+", compiler), compiler
    assert f"C++ {_C.build_info()['cplusplus']}" in compiler
    assert info["build"]["cplusplus"] >= 202002  # torch 2.13's headers need C++20
    # built with OpenMP: at::parallel_for is an OpenMP loop (setup.py passes -fopenmp)
    assert info["build"]["openmp"] is not None and "OpenMP 20" in compiler
    cxx = os.environ.get("CXX", "c++")
    if not compiler.startswith("gcc") or shutil.which(cxx) is None:
        pytest.skip("checked against gcc only")
    installed = subprocess.run([cxx, "-dumpfullversion"], capture_output=True, text=True).stdout
    if not installed.strip():
        pytest.skip(f"{cxx} is not gcc")
    if installed.strip() not in compiler:
        pytest.skip(f"built by another compiler than today's {cxx} {installed.strip()}")


def _proc_cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo, read here independently of fastrnn.info."""
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads Linux's /proc/cpuinfo")
def test_cpu_model_and_features(text, info):
    cpuinfo = _proc_cpuinfo()
    fields = _fields(text)
    assert fields["cpu"] == (f"{cpuinfo['model name']} (family {cpuinfo['cpu family']}, "
                             f"model {cpuinfo['model']})")
    # The features the kernels' choice reads (GCC's names) agree with the kernel's flags.
    flags = set(cpuinfo["flags"].split())
    linux_names = {"avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512dq": "avx512dq",
                   "avx512bw": "avx512bw", "avx512vl": "avx512vl", "avx512bf16": "avx512_bf16"}
    assert info["cpu_features"] == {name: flag in flags for name, flag in linux_names.items()}
    assert fields["cpu features"].split(" (no ")[0].split() == [
        name for name, flag in linux_names.items() if flag in flags]
    detected = "avx512" if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags else \
        "avx2" if {"avx2", "fma"} <= flags else "baseline"
    assert _C.cpu_isa_detected() == detected


def test_cpu_isa_gemm_and_bf16_products(text, info):
    fields = _fields(text)
    assert fields["cpu isa"] == f"{_C.cpu_isa()} (detected: {_C.cpu_isa_detected()})"
    assert fields["cpu gemm"] == _C.cpu_gemm_backend()
    has_bf16 = info["cpu_features"].get("avx512bf16", False)
    no_bf16 = "float32 (this CPU has no AVX512_BF16)"
    if _C.cpu_bf16_products():
        assert fields["cpu bfloat16 products"] == "avx512_bf16"
    elif not has_bf16:
        assert fields["cpu bfloat16 products"] == no_bf16
    # the instruction set *in use*: lowering it through the environment shows, with the reason
    # bfloat16 products are off
    lowered = _fields(_run_info(env={"FASTRNN_CPU_ISA": "baseline"}))
    assert lowered["cpu isa"] == f"baseline (detected: {_C.cpu_isa_detected()})"
    assert lowered["cpu bfloat16 products"] == (
        "float32 (kernels lowered to baseline by FASTRNN_CPU_ISA)" if has_bf16 else no_bf16)
    # (FASTRNN_CPU_ISA cleared: CI runs the suite with it set too)
    unlowered = _run_info(env={"FASTRNN_CPU_BF16": "0", "FASTRNN_CPU_ISA": ""})
    assert _fields(unlowered)["cpu bfloat16 products"] == (
        "float32 (FASTRNN_CPU_BF16=0)" if has_bf16 else no_bf16)


def test_torch_cpu_fields(text, info):
    fields = _fields(text)
    assert fields["torch cpu capability"] == torch.backends.cpu.get_cpu_capability()
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert info["torch_bf16_native"] is native
    assert (fields["torch bfloat16"] == "oneDNN") is native


def test_cuda_build_fields(text, info):
    fields = _fields(text)
    build = info["build"]
    assert build["cuda"] == _C.cuda_built()
    assert fields["cuda built"] == ("yes" if _C.cuda_built() else "no")
    if _C.cuda_built():
        assert re.fullmatch(r"\d+\.\d+\.\d+", fields["nvcc"])
        assert re.fullmatch(r"\d+(,\d+)*", fields["cuda archs compiled"])
        assert fields["cuda arch list"] == build["cuda_arch_list"] != ""
    else:
        assert "nvcc" not in fields and build["nvcc"] is None
        assert build["cuda_arch_list"] is None and build["cuda_archs_compiled"] is None


def test_backends(text, info):
    fields = _fields(text)
    assert fields["backend cpu"] == "usable" and info["backends"]["cpu"] == {"usable": True}
    cuda = info["backends"]["cuda"]
    if not _C.cuda_built():
        expected = "fastrnn was built without CUDA (a CPU build)"
    elif torch.version.cuda is None:
        expected = f"torch {torch.__version__} has no CUDA (a CPU build)"
    elif not torch.cuda.is_available():
        expected = "no CUDA device (torch.cuda.is_available() is False)"
    else:
        assert cuda["usable"], cuda
        assert fields["backend cuda"].startswith("usable [")
        return
    assert cuda == {"usable": False, "reason": expected}
    assert fields["backend cuda"] == f"not usable: {expected}"


@pytest.mark.parametrize("arch_list,capability,covered", [
    ("8.0;8.6;8.9;9.0+PTX", (8, 6), True),    # exact cubin
    ("8.0", (8, 9), True),                      # sm_80 cubin runs on sm_89
    ("8.0;8.6", (7, 5), False),                 # nothing for an older device
    ("8.0;8.6", (9, 0), False),                 # no PTX: no newer device
    ("8.0;9.0+PTX", (12, 0), True),             # PTX JIT-compiles for newer devices
    ("8.6+PTX", (8, 0), False),                 # PTX of a newer architecture does not
    ("9.0a", (9, 0), True),
    ("Hopper", (9, 0), True),                   # unreadable: left to the test forward
])
def test_arch_covers(arch_list, capability, covered):
    assert _arch_covers(arch_list, capability) is covered
