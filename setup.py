"""Build of fastrnn's extension fastrnn._C.

CPU build unless CUDA is wanted and possible: FASTRNN_FORCE_CPU=1 forces CPU, FASTRNN_FORCE_CUDA=1
forces CUDA, otherwise CUDA is built when torch has CUDA and nvcc is found. CUDA architectures
come from TORCH_CUDA_ARCH_LIST (default below). The C++ standard is torch's (no -std here), and
no -march: instruction sets are chosen at run time (csrc/cpu/isa.cpp).
Install with `pip install --no-build-isolation -e .` so the build uses the torch already there;
`pip wheel --no-build-isolation .` makes a wheel (docs/packaging.md).

The CUDA toolkit is CUDA_HOME (or CUDA_PATH) when set, else the one the nvcc on PATH belongs to
(wrapper scripts included: nvcc --dryrun names its root). torch's CUDA wheels bring the cuBLAS,
cuSPARSE and cuSOLVER headers its CUDA headers include (site-packages/nvidia/.../include); a
toolkit without them (nvcc alone) gets them from there.
"""

import glob
import os
import re
import shutil
import subprocess
import sysconfig


def cuda_toolkit() -> str | None:
    """The CUDA toolkit's root directory, or None."""
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            return os.environ[variable]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        dry = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    top = re.search(r"^#\$ TOP=(.+)$", dry.stdout + dry.stderr, re.M)
    return os.path.realpath(top[1].strip()) if top else None


# torch.utils.cpp_extension reads CUDA_HOME once, when imported: set it first. (torch's own
# guess from an nvcc wrapper on PATH can be /usr/local, which holds no CUDA headers.)
if cuda_toolkit() is not None:
    os.environ["CUDA_HOME"] = cuda_toolkit()

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME, BuildExtension, CppExtension, CUDAExtension)

DEFAULT_CUDA_ARCHS = "8.0;8.6;8.9;9.0+PTX"


def want_cuda() -> bool:
    if os.environ.get("FASTRNN_FORCE_CPU") == "1":
        return False
    if os.environ.get("FASTRNN_FORCE_CUDA") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def cuda_library_headers() -> list[str]:
    """Include directories for the CUDA library headers torch's CUDA headers include
    (cublas_v2.h, cusparse.h, cusolverDn.h) that the toolkit lacks: those torch's CUDA wheels
    install under site-packages/nvidia."""
    wanted = ["cublas_v2.h", "cusparse.h", "cusolverDn.h"]
    toolkit = os.path.join(CUDA_HOME or "", "include")
    missing = [h for h in wanted if not os.path.exists(os.path.join(toolkit, h))]
    found = []
    packages = os.path.join(sysconfig.get_paths()["purelib"], "nvidia")
    for include in sorted(glob.glob(os.path.join(packages, "*", "include"))):
        if any(os.path.exists(os.path.join(include, h)) for h in missing):
            found.append(include)
    return found


def extension():
    sources = sorted(glob.glob("csrc/cpu/**/*.cpp", recursive=True) + glob.glob("csrc/ops/*.cpp"))
    include_dirs = [os.path.abspath("csrc"), os.path.abspath("csrc/include")]
    # -fopenmp: ATen's at::parallel_for is an inline OpenMP loop in torch's CPU builds; without
    # the flag it silently runs on one thread. The extension then needs libgomp.so.1, which the
    # loader finds already loaded by libtorch_cpu (torch ships it): one OpenMP runtime.
    cxx_flags = ["-O3", "-fno-math-errno", "-fopenmp", "-Wall", "-Wno-unknown-pragmas"]
    link_flags = ["-fopenmp"]
    if not want_cuda():
        return CppExtension(
            "fastrnn._C", sources, include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags,
        )
    arch_list = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    cxx_flags.append(f'-DFASTRNN_CUDA_ARCH_LIST="{arch_list}"')  # for fastrnn.info
    sources += sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/ops/cuda/*.cpp"))
    return CUDAExtension(
        "fastrnn._C",
        sources,
        include_dirs=include_dirs + cuda_library_headers(),
        define_macros=[("FASTRNN_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
        extra_link_args=link_flags,
    )


def requirements() -> list[str]:
    # The extension links libtorch's C++ API, which has no stable ABI across torch's minor
    # releases: a build runs only with the torch minor version it was compiled against.
    major, minor = torch.__version__.split(".")[:2]
    return [f"torch=={major}.{minor}.*", "numpy"]


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension},
      install_requires=requirements())
