// The sidecar's error state, device selection and the host-side view checks shared by the
// kernel entries (see common.cuh).
#include "cuda/common.cuh"
#include <cstdlib>
#include <mutex>

namespace fovea::cuda {

namespace {
// One message per thread: the core reads it right after the failing call, on that thread.
thread_local std::string t_last_error;
}  // namespace

void set_last_error(std::string msg) { t_last_error = std::move(msg); }
const char* last_error() { return t_last_error.c_str(); }

int cuda_fail(cudaError_t e, const char* what, int device) {
  std::ostringstream os;
  os << what << " on cuda:" << device << ": " << cudaGetErrorString(e) << " ("
     << cudaGetErrorName(e) << ")";
  if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction) {
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    os << ". The sidecar has no code for this GPU (sm_" << major << minor
       << "); rebuild with FOVEA_CUDA_ARCHS=\"" << major << minor << "\" (or a list that includes it)";
  } else if (e == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      os << "; " << free_b / (1 << 20) << " MiB free of " << total_b / (1 << 20) << " MiB";
  }
  // Non-sticky errors would otherwise resurface at the next unrelated launch check.
  cudaGetLastError();
  set_last_error(os.str());
  return 1;
}

int device_count() {
  static int count = -1;
  static std::once_flag once;
  std::call_once(once, [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess) count = n;
    else cudaGetLastError();
  });
  return count;
}

int use_device(int device, const char* what) {
  int n = device_count();
  if (n < 0) return fail(what, ": CUDA is not usable in this process (probe() explains why)");
  if (device < 0 || device >= n || device >= kMaxDevices)
    return fail(what, ": cuda:", device, " does not exist (", n, " visible device",
                n == 1 ? "" : "s", ")");
  FOVEA_CU(cudaSetDevice(device), what, device);
  return 0;
}

int check_launch(const char* what, int device) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_fail(e, what, device);
  return 0;
}

int check_view(const TensorView* v, const char* op, const char* name) {
  if (!v) return fail(op, ": ", name, " is null");
  if (v->device < 0) return fail(op, ": ", name, " is on the cpu, expected a cuda tensor");
  if (int(v->dtype) < 0 || int(v->dtype) >= kNumDTypes)
    return fail(op, ": ", name, " has unknown dtype code ", int(v->dtype));
  if (v->ndim < 0 || v->ndim > kMaxDims)
    return fail(op, ": ", name, " has ", v->ndim, " dims (at most ", kMaxDims, ")");
  for (int d = 0; d < v->ndim; ++d)
    if (v->shape[d] < 0) return fail(op, ": ", name, " has a negative size in dim ", d);
  if (!v->data && v->numel() > 0) return fail(op, ": ", name, " has no data pointer");
  return 0;
}

int check_same_device(const TensorView& a, const TensorView& b, const char* op) {
  if (a.device != b.device)
    return fail(op, ": tensors are on cuda:", a.device, " and cuda:", b.device,
                "; move them to one device first");
  return 0;
}

int check_same_shape(const TensorView& a, const TensorView& ref, const char* op,
                     const char* name) {
  bool same = a.ndim == ref.ndim;
  for (int d = 0; same && d < a.ndim; ++d) same = a.shape[d] == ref.shape[d];
  if (!same) {
    std::ostringstream os;
    os << op << ": " << name << " has shape [";
    for (int d = 0; d < a.ndim; ++d) os << (d ? ", " : "") << a.shape[d];
    os << "], expected [";
    for (int d = 0; d < ref.ndim; ++d) os << (d ? ", " : "") << ref.shape[d];
    os << "] (broadcast inputs must be expanded to the output's shape with stride 0)";
    set_last_error(os.str());
    return 1;
  }
  return 0;
}

}  // namespace fovea::cuda
