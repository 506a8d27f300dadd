// One non-default stream per device, and the copies and synchronization that run on it.
//
// Ordering model (as in PyTorch's eager mode with one stream): everything for a device is
// enqueued on its stream in call order, so no call but memcpy_d2h and synchronize blocks the
// host. Streams are created lazily and never destroyed: tearing them down from a static
// destructor races with the driver's own shutdown at process exit.
#include <atomic>
#include <mutex>
#include "cuda/common.cuh"
#include "cuda/entries.h"

namespace fovea::cuda {

namespace {
std::atomic<cudaStream_t> g_streams[kMaxDevices];
std::mutex g_stream_mutex;
}  // namespace

cudaStream_t stream_for(int device) {
  cudaStream_t s = g_streams[device].load(std::memory_order_acquire);
  if (s) return s;
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  s = g_streams[device].load(std::memory_order_relaxed);
  if (s) return s;
  // NonBlocking: no implicit ordering with the legacy default stream, which nothing of ours
  // uses; our own ordering comes from using this one stream for everything.
  cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    cuda_fail(e, "creating the stream", device);
    return nullptr;
  }
  g_streams[device].store(s, std::memory_order_release);
  return s;
}

int memcpy_h2d(int device, void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return 0;
  if (use_device(device, "memcpy_h2d")) return 1;
  cudaStream_t s = stream_for(device);
  if (!s) return 1;
  FOVEA_CU(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s), "memcpy_h2d", device);
  // From pageable memory (every Node buffer) cudaMemcpyAsync returns only after the source
  // has been staged, so the caller may reuse it at once. From page-locked memory the DMA
  // reads the source later; synchronize then, so the same promise holds.
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, src) == cudaSuccess) {
    if (attr.type == cudaMemoryTypeHost)
      FOVEA_CU(cudaStreamSynchronize(s), "memcpy_h2d (pinned source)", device);
  } else {
    cudaGetLastError();  // older drivers report plain host pointers as an error
  }
  return 0;
}

int memcpy_d2h(int device, void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return 0;
  if (use_device(device, "memcpy_d2h")) return 1;
  cudaStream_t s = stream_for(device);
  if (!s) return 1;
  FOVEA_CU(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s), "memcpy_d2h", device);
  // Reading back is the one synchronizing operation: errors of earlier asynchronous kernels
  // surface here, so name that possibility.
  FOVEA_CU(cudaStreamSynchronize(s), "memcpy_d2h (or an earlier kernel on this stream)", device);
  return 0;
}

int memcpy_d2d(int device, void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return 0;
  if (use_device(device, "memcpy_d2d")) return 1;
  cudaStream_t s = stream_for(device);
  if (!s) return 1;
  FOVEA_CU(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s), "memcpy_d2d", device);
  return 0;
}

int synchronize(int device) {
  if (use_device(device, "synchronize")) return 1;
  cudaStream_t s = stream_for(device);
  if (!s) return 1;
  FOVEA_CU(cudaStreamSynchronize(s), "synchronize (an earlier kernel or copy failed)", device);
  return 0;
}

}  // namespace fovea::cuda
