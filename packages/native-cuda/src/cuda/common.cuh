// Internals shared by the sidecar's translation units: the per-thread last-error string
// behind FoveaCudaApi::last_error, device selection, the per-device stream, launch helpers.
//
// Every ABI entry returns 0 on success and nonzero on failure; failures go through fail(),
// which records the message for last_error() on the calling thread. Nothing here throws
// across the C ABI: api.cu wraps each entry so a C++ exception becomes an error code too.
#pragma once
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include "core/cuda_api.h"
#include "core/tensor_view.h"

namespace fovea::cuda {

// Devices beyond this ordinal are rejected (per-device state lives in fixed arrays so that
// lookups need no lock).
constexpr int kMaxDevices = 64;

void set_last_error(std::string msg);
const char* last_error();

// Records the message for last_error() and returns 1, so `return fail(...)` reads naturally.
template <class... A> int fail(const A&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  set_last_error(os.str());
  return 1;
}

// Records "<what> on cuda:<device>: <cudaGetErrorString> (<name>)" plus a fix where one is
// known (e.g. no kernel image for this GPU's architecture). Clears the non-sticky error.
int cuda_fail(cudaError_t e, const char* what, int device);

#define FOVEA_CU(call, what, device)                                          \
  do {                                                                        \
    cudaError_t fovea_e_ = (call);                                            \
    if (fovea_e_ != cudaSuccess) return ::fovea::cuda::cuda_fail(fovea_e_, what, device); \
  } while (0)

// Number of visible devices, asked once (the set is fixed for the process lifetime).
// Returns -1 when the runtime cannot count them (no driver etc.).
int device_count();

// Validates the ordinal and makes it current on this thread. Kernel launches and
// allocations go to the current device, so every entry that touches a device calls this.
int use_device(int device, const char* what);

// The device's one stream, created on first use with cudaStreamNonBlocking. All kernels,
// copies and cuBLAS calls for the device are enqueued on it, in call order; that single
// ordering is what lets the caching allocator hand a freed block to the next caller without
// events (the previous user's kernels run before anything enqueued later). Call after
// use_device(). Returns nullptr with last_error set on failure.
cudaStream_t stream_for(int device);

// Checks a kernel launch (cudaGetLastError) and names the op in the error.
int check_launch(const char* what, int device);

// Grid for a grid-stride loop over n items with 256-thread blocks. Capped so that the x
// dimension stays legal; the loop covers the rest.
constexpr int kThreads = 256;
inline unsigned grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(std::min<int64_t>(std::max<int64_t>(blocks, 1), int64_t(1) << 20));
}

// Host-side checks shared by the kernel entries.
int check_view(const TensorView* v, const char* op, const char* name);
int check_same_device(const TensorView& a, const TensorView& b, const char* op);
int check_same_shape(const TensorView& a, const TensorView& ref, const char* op, const char* name);

}  // namespace fovea::cuda
