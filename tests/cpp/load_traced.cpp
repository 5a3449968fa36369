// A LibTorch program that runs a model traced in Python with fastrnn's modules (built and run by
// tests/test_deploy.py). fastrnn's ops must be registered in the process before
// torch::jit::load: it loads fastrnn's extension library, a Python extension module, which needs
// libpython loaded first (and torch's library directory on the library path, for
// libtorch_python).
//
//   load_traced <libpython> <fastrnn extension> <traced model> <input> <output>
// input: raw float32 values of a [2, 5, 4] tensor; output: the model's first result, written
// as raw float32 values (its shape goes to stdout).
#include <dlfcn.h>
#include <torch/script.h>

#include <fstream>
#include <iostream>
#include <vector>

namespace {

bool load_library(const char* path) {
  if (dlopen(path, RTLD_NOW | RTLD_GLOBAL) != nullptr) return true;
  std::cerr << "dlopen " << path << ": " << dlerror() << "\n";
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: load_traced <libpython> <fastrnn extension> <model> <input> <output>\n";
    return 2;
  }
  if (!load_library(argv[1]) || !load_library(argv[2])) return 3;
  torch::jit::Module module = torch::jit::load(argv[3]);
  std::vector<float> values(2 * 5 * 4);
  std::ifstream in(argv[4], std::ios::binary);
  in.read(reinterpret_cast<char*>(values.data()),
          static_cast<std::streamsize>(values.size() * sizeof(float)));
  if (!in) {
    std::cerr << "could not read " << values.size() << " floats from " << argv[4] << "\n";
    return 4;
  }
  const torch::Tensor x = torch::from_blob(values.data(), {2, 5, 4}, torch::kFloat32);
  // The traced LSTM returns (output, (h_n, c_n)).
  const torch::Tensor output =
      module.forward({x}).toTuple()->elements()[0].toTensor().contiguous();
  std::ofstream out(argv[5], std::ios::binary);
  out.write(reinterpret_cast<const char*>(output.data_ptr<float>()),
            static_cast<std::streamsize>(output.numel() * sizeof(float)));
  std::cout << output.sizes() << "\n";
  return 0;
}
