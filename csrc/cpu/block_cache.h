// fastrnn's large CPU buffers (outputs, workspaces, gradients, packed weights, scratch) come
// from a cache of freed blocks instead of fresh memory on every call. A buffer of a few MB or
// more is mmap'ed by malloc and unmapped when freed, so the next call pays a page fault for
// every 4 KB it touches: 1.5 us each on the development VM, 53k of them (80 ms) in one training
// step of an LSTM at T=100, B=64, I=H=512. The cache keeps such blocks (sizes rounded up to
// 2 MB) for the next call of the same shapes. Tensors made here are ordinary resizable CPU
// tensors; their storage returns to the cache when the last reference goes.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>

namespace fastrnn::cpu {

// Requests below this many bytes go to torch's CPU allocator (malloc reuses those itself).
constexpr std::size_t kCachedMinBytes = std::size_t(1) << 20;

// An uninitialized contiguous CPU tensor, its storage from the block cache.
at::Tensor empty_cached(at::IntArrayRef shape, at::ScalarType dtype);

// Frees every cached block not in use (fastrnn.empty_cache()); returns the bytes freed.
std::size_t release_cached_blocks();

// Bytes held by free blocks in the cache.
std::size_t cached_free_bytes();

}  // namespace fastrnn::cpu
