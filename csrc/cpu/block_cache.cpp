#include "cpu/block_cache.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <pthread.h>

#include <iterator>
#include <mutex>
#include <vector>

namespace fastrnn::cpu {

namespace {

constexpr std::size_t kGranule = std::size_t(2) << 20;  // block sizes: multiples of 2 MB
// Free blocks kept at most (the oldest freed go first): enough for the buffers of a few layers'
// training steps, little next to the memory a model of that size trains in.
constexpr std::size_t kMaxFreeBytes = std::size_t(1) << 30;
constexpr std::size_t kMaxFreeBlocks = 32;

struct Block {
  void* data;
  std::size_t size;
};

class BlockCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(std::size_t bytes) override {
    if (bytes < kCachedMinBytes) return c10::GetCPUAllocator()->allocate(bytes);
    const std::size_t size = (bytes + kGranule - 1) / kGranule * kGranule;
    Block* block = take(size);
    if (block == nullptr) block = new Block{c10::alloc_cpu(size), size};  // throws when out of memory
    return {block->data, block, &BlockCache::give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  std::size_t release() {
    std::vector<Block*> freed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      freed.swap(free_);
      free_bytes_ = 0;
    }
    std::size_t bytes = 0;
    for (Block* block : freed) bytes += destroy(block);
    return bytes;
  }

  std::size_t free_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return free_bytes_;
  }

  static BlockCache& instance() {
    // Never destroyed: storages may outlive static destruction. A fork (a DataLoader worker)
    // waits for the lock, so the child does not inherit it held by a thread it lacks.
    static BlockCache* cache = [] {
      auto* created = new BlockCache();
      pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                     [] { instance().mutex_.unlock(); });
      return created;
    }();
    return *cache;
  }

 private:
  static void give_back(void* context) { instance().put(static_cast<Block*>(context)); }

  static std::size_t destroy(Block* block) {
    const std::size_t size = block->size;
    c10::free_cpu(block->data);
    delete block;
    return size;
  }

  // The most recently freed block of exactly `size` bytes, or null.
  Block* take(std::size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = free_.rbegin(); it != free_.rend(); ++it) {
      if ((*it)->size == size) {
        Block* block = *it;
        free_.erase(std::next(it).base());
        free_bytes_ -= size;
        return block;
      }
    }
    return nullptr;
  }

  void put(Block* block) {
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_back(block);
      free_bytes_ += block->size;
      std::size_t drop = 0;
      while (drop < free_.size() &&
             (free_bytes_ > kMaxFreeBytes || free_.size() - drop > kMaxFreeBlocks)) {
        free_bytes_ -= free_[drop]->size;
        evicted.push_back(free_[drop]);
        ++drop;
      }
      free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(drop));
    }
    for (Block* old : evicted) destroy(old);
  }

  std::mutex mutex_;
  std::vector<Block*> free_;  // oldest freed first
  std::size_t free_bytes_ = 0;
};

}  // namespace

at::Tensor empty_cached(at::IntArrayRef shape, at::ScalarType dtype) {
  return at::detail::empty_generic(shape, &BlockCache::instance(),
                                   c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                   std::nullopt);
}

std::size_t release_cached_blocks() { return BlockCache::instance().release(); }

std::size_t cached_free_bytes() { return BlockCache::instance().free_bytes(); }

}  // namespace fastrnn::cpu
