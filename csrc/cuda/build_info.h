// What nvcc made of the CUDA half of the build, for fastrnn.info: nvcc's version and the virtual
// architectures it compiled for. Torch-free, like the rest of csrc/cuda.
#pragma once

namespace fastrnn::cuda {

const char* nvcc_version();    // "13.0.88": __CUDACC_VER_{MAJOR,MINOR,BUILD}__
const char* compiled_archs();  // "800,860,890,900": nvcc's __CUDA_ARCH_LIST__ (virtual archs)

}  // namespace fastrnn::cuda
