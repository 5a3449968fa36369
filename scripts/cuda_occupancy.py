"""Occupancy of fastrnn's CUDA step kernels, from ptxas's register counts and CUDA's host-side
occupancy calculator (cuda_occupancy.h), without a GPU: a markdown table for docs/gpu-report.md.

    python scripts/cuda_occupancy.py

Compiles csrc/cuda with nvcc as tests/test_cuda_build.py does (ptxas -v), then evaluates
cudaOccMaxActiveBlocksPerMultiprocessor for 256-thread blocks (what step_kernels.cuh launches)
on an A100 (sm_80) and an H100 SXM (sm_90), whose properties are written below.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_cuda_build import FLAGS, SOURCES, ptxas_report  # noqa: E402
from test_cuda_emulation import cuda_include_dir  # noqa: E402

# Per-SM limits of each device: (major, minor, threads per SM, registers per SM, shared memory
# per SM, SMs) from NVIDIA's specifications of the A100 and H100 SXM.
DEVICES = {"80": ("A100", 8, 0, 2048, 65536, 167936, 108),
           "90": ("H100 SXM", 9, 0, 2048, 65536, 233472, 132)}
THREADS = 256

PROGRAM = r"""
#include <cuda_occupancy.h>
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv) {
  // argv: major minor threads_per_sm regs_per_sm smem_per_sm sms block registers
  cudaOccDeviceProp p{};
  p.computeMajor = atoi(argv[1]); p.computeMinor = atoi(argv[2]);
  p.maxThreadsPerBlock = 1024; p.maxThreadsPerMultiprocessor = atoi(argv[3]);
  p.regsPerBlock = 65536; p.regsPerMultiprocessor = atoi(argv[4]); p.warpSize = 32;
  p.sharedMemPerBlock = 49152; p.sharedMemPerMultiprocessor = atol(argv[5]);
  p.numSms = atoi(argv[6]); p.sharedMemPerBlockOptin = p.sharedMemPerMultiprocessor - 1024;
  p.reservedSharedMemPerBlock = 1024;
  cudaOccFuncAttributes a{};
  a.maxThreadsPerBlock = 1024; a.numRegs = atoi(argv[8]); a.sharedSizeBytes = 0;
  a.numBlockBarriers = 1;
  cudaOccDeviceState s{};
  cudaOccResult r{};
  if (cudaOccMaxActiveBlocksPerMultiprocessor(&r, &p, &a, &s, atoi(argv[7]), 0) != CUDA_OCC_SUCCESS)
    return 1;
  printf("%d\n", r.activeBlocksPerMultiprocessor);
  return 0;
}
"""


def main() -> int:
    include = cuda_include_dir()
    if include is None:
        print("needs a CUDA toolkit (cuda_occupancy.h)", file=sys.stderr)
        return 1
    registers: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)  # (kernel, arch) -> dtype
    with tempfile.TemporaryDirectory() as work:
        for source in SOURCES:
            if "step_kernels" not in source.name:
                continue
            dtype = source.stem.split("_")[-1]
            result = subprocess.run(
                ["nvcc", *FLAGS, f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}", "-c",
                 str(source), "-o", f"{work}/{source.stem}.o"], capture_output=True, text=True,
                check=True)
            for (mangled, arch), (count, _, _) in ptxas_report(result.stdout + result.stderr).items():
                kernel = re.findall(r"\d+([a-z]+(?:_[a-z]+)*_kernel)", mangled)[-1]
                if "Relu" in mangled or "Tanh" in mangled:
                    kernel += " (relu)" if "Relu" in mangled else " (tanh)"
                registers[(kernel, arch)][dtype] = max(count, registers[(kernel, arch)].get(dtype, 0))
        program = Path(work) / "occupancy"
        (Path(work) / "occupancy.cpp").write_text(PROGRAM)
        subprocess.run(["g++", "-O1", f"-I{include}", str(Path(work) / "occupancy.cpp"), "-o",
                        str(program)], check=True)

        def blocks(arch: str, count: int) -> int:
            _, major, minor, threads, regs, smem, sms = DEVICES[arch]
            out = subprocess.run([str(program), str(major), str(minor), str(threads), str(regs),
                                  str(smem), str(sms), str(THREADS), str(count)],
                                 capture_output=True, text=True, check=True).stdout
            return int(out)

        dtypes = ["f32", "f64", "f16", "bf16"]
        print(f"| kernel | arch | registers ({' / '.join(dtypes)}) | blocks of {THREADS} per SM "
              "| occupancy (worst dtype) |")
        print("|---|---|---|---:|---:|")
        for (kernel, arch), by_dtype in sorted(registers.items()):
            worst = max(by_dtype.values())
            active = blocks(arch, worst)
            threads_per_sm = DEVICES[arch][3]
            counts = " / ".join(str(by_dtype.get(d, "-")) for d in dtypes)
            print(f"| {kernel} | sm_{arch} ({DEVICES[arch][0]}) | {counts} | {active} | "
                  f"{100 * active * THREADS / threads_per_sm:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
