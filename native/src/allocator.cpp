/*
 * CachingAllocator: exact-size free lists over a backend's alloc/release (see allocator.h).
 */
#include "allocator.h"

#include <algorithm>
#include <new>

#include "error.h"

namespace nvlm {

namespace {
constexpr size_t kBlockAlignment = 256;
}

CachingAllocator::~CachingAllocator() { empty_cache_locked(); }

size_t CachingAllocator::block_size(int64_t nbytes) {
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(nbytes, 1));
    return (bytes + kBlockAlignment - 1) / kBlockAlignment * kBlockAlignment;
}

nvlm_status CachingAllocator::allocate(int64_t nbytes, void** ptr) {
    const size_t block = block_size(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto cached = free_blocks_.find(block);
    if (cached != free_blocks_.end() && !cached->second.empty()) {
        *ptr = cached->second.back();
        cached->second.pop_back();
        cached_bytes_ -= static_cast<int64_t>(block);
    } else {
        nvlm_status status = backend_.alloc(block, ptr);
        if (status == NVLM_ERR_OUT_OF_MEMORY && cached_bytes_ > 0) {
            empty_cache_locked();
            status = backend_.alloc(block, ptr);
        }
        NVLM_TRY(status);
    }
    live_bytes_ += nbytes;
    peak_bytes_ = std::max(peak_bytes_, live_bytes_);
    return NVLM_OK;
}

void CachingAllocator::release(void* ptr, int64_t nbytes) {
    const size_t block = block_size(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    live_bytes_ -= nbytes;
    try {
        free_blocks_[block].push_back(ptr);
        cached_bytes_ += static_cast<int64_t>(block);
    } catch (const std::bad_alloc&) {
        backend_.release(ptr);  // no host memory to remember the block: give it back instead
    }
}

void CachingAllocator::empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    empty_cache_locked();
}

void CachingAllocator::empty_cache_locked() {
    for (auto& entry : free_blocks_)
        for (void* block : entry.second) backend_.release(block);
    free_blocks_.clear();
    cached_bytes_ = 0;
}

nvlm_memory_stats CachingAllocator::stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {live_bytes_, peak_bytes_, cached_bytes_};
}

void CachingAllocator::reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_bytes_ = live_bytes_;
}

}  // namespace nvlm
