// Debug switch for the tests: with FASTRNN_DEBUG_POISON=1 in the environment (read once), every
// output and scratch buffer fastrnn allocates starts filled with NaN instead of whatever memory
// held, so an element a kernel forgets to write shows up as NaN in the results.
#pragma once

#include <cstdlib>
#include <cstring>

namespace fastrnn {

inline bool debug_poison() {
  static const bool enabled = [] {
    const char* value = std::getenv("FASTRNN_DEBUG_POISON");
    return value != nullptr && std::strcmp(value, "1") == 0;
  }();
  return enabled;
}

}  // namespace fastrnn
