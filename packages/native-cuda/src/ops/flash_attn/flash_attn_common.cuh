// Device building blocks shared by the flash-attention kernels (flash_attn_fwd_kernel.cuh,
// flash_attn_bwd_kernel.cuh): the kernel argument block, the tensor-core MMA wrapper with
// its register-fragment loaders, the global -> shared tile loader and the mask arithmetic.
//
// Tensor cores: mma.sync.aligned.m16n8k16.row.col with f32 accumulators (sm_80 PTX; runs
// unchanged on sm_90, shows up as HMMA.16816.F32[.BF16] in SASS). Fragment layout per the
// PTX ISA, with g = lane / 4 and t = lane % 4 (lower column in the low 16 bits):
//   A 16x16: a0 = (g,   2t..2t+1)  a1 = (g+8, 2t..2t+1)  a2 = (g, 2t+8..)  a3 = (g+8, 2t+8..)
//   B 16x8:  b0 = (k = 2t..2t+1, n = g)                    b1 = (k = 2t+8..2t+9, n = g)
//   C 16x8:  c0,c1 = (g, 2t..2t+1)                         c2,c3 = (g+8, 2t..2t+1)
// The C layout of two neighbouring 16x8 tiles is exactly the A layout of one 16x16 tile,
// which is how P (and dS) go from a score accumulator into the next MMA without shared
// memory (the FlashAttention-2 register trick).
//
// Shared memory holds 16-bit elements as raw bits (uint16_t), rows padded by 8 elements
// (16 bytes) so that the 8 rows a fragment load touches fall in distinct banks. Operands that
// are read "transposed" (V in P·V, Pᵀ/dSᵀ and dO/Q in the dK/dV products) are read with two
// 16-bit loads per register instead of a transposed copy: simple to check by reading.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace fovea::cuda::fa {

constexpr int kThreads = 128;  // 4 warps; each owns 16 rows of a 64-row tile
constexpr int kBM = 64;        // query rows per tile
constexpr int kBN = 64;        // key rows per tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Everything a kernel reads, by value (POD). Element strides; the last dim is contiguous.
struct FaArgs {
  const void* q; const void* k; const void* v; const void* out; const void* dout;
  void* o_w;           // forward output (out), written
  float* lse;          // [hq, total_q]
  void* dq; void* dk; void* dv;  // contiguous [total, heads, d]
  float* dsum;         // workspace [hq, total_q]: rowsum(dO ∘ O)
  float* dq_acc;       // workspace [total_q, hq, d] (atomic dQ only)
  const int32_t* cu_q; const int32_t* cu_k;
  int64_t total_q, total_k;
  int64_t q_rs, q_hs, k_rs, k_hs, v_rs, v_hs, o_rs, o_hs;
  int hq, hkv, group;  // group = hq / hkv
  int causal, wl, wr;  // wl/wr < 0: unbounded
  float scale, scale_log2;
  int vec;             // 1: every row start is 16-byte aligned (uint4 tile loads)
};

// One sequence's extent, read from the cumulative offsets.
struct Seq {
  int q0, sq, k0, sk;
  __device__ Seq(const FaArgs& a, int b)
      : q0(a.cu_q[b]), sq(a.cu_q[b + 1] - a.cu_q[b]), k0(a.cu_k[b]), sk(a.cu_k[b + 1] - a.cu_k[b]) {}
};

// Query i sees key j (sequence-local) iff both exist and d = j - (i + sk - sq) lies in the
// causal/window band; the band is bottom-right aligned (see flash_attn.h).
__device__ __forceinline__ bool visible(const FaArgs& a, const Seq& s, int i, int j) {
  if (i >= s.sq || j >= s.sk) return false;
  const int d = j - (i + s.sk - s.sq);
  if (a.causal && d > 0) return false;
  if (a.wl >= 0 && d < -a.wl) return false;
  if (a.wr >= 0 && d > a.wr) return false;
  return true;
}

// The largest d (key minus diagonal) any query may see: 0 when causal (min(0, wr), and a
// right window is never negative), wr when only a right window is set. False: unbounded.
__device__ __forceinline__ bool right_bound(const FaArgs& a, long long* r) {
  if (a.causal) { *r = 0; return true; }
  if (a.wr >= 0) { *r = a.wr; return true; }
  return false;
}

// Keys [*lo, *hi) that query rows [ia, ib] (inclusive) can see; tiles outside are skipped.
__device__ __forceinline__ void key_range(const FaArgs& a, const Seq& s, int ia, int ib, int* lo, int* hi) {
  const long long off = s.sk - s.sq;
  long long l = 0, h = s.sk, r;
  if (a.wl >= 0) l = ia + off - a.wl;
  if (right_bound(a, &r)) h = ib + off + r + 1;
  *lo = int(l < 0 ? 0 : (l > s.sk ? s.sk : l));
  *hi = int(h < 0 ? 0 : (h > s.sk ? s.sk : h));
}

// Queries [*lo, *hi) that can see some key of [ja, jb] (inclusive), for the dK/dV pass.
__device__ __forceinline__ void query_range(const FaArgs& a, const Seq& s, int ja, int jb, int* lo, int* hi) {
  const long long off = s.sk - s.sq;
  long long l = 0, h = s.sq, r;
  if (right_bound(a, &r)) l = ja - off - r;  // d <= r  <=>  i >= j - off - r
  if (a.wl >= 0) h = jb - off + a.wl + 1;     // d >= -wl <=> i <= j - off + wl
  *lo = int(l < 0 ? 0 : (l > s.sq ? s.sq : l));
  *hi = int(h < 0 ? 0 : (h > s.sq ? s.sq : h));
}

// ---------------------------------------------------------------- MMA and fragments
template <class T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) in the low half
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ uint16_t bits(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  }
  static __device__ __forceinline__ float to_f(uint16_t b) {
    return __bfloat162float(__ushort_as_bfloat16(b));
  }
};
template <> struct Mma<__half> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ uint16_t bits(float x) { return __half_as_ushort(__float2half_rn(x)); }
  static __device__ __forceinline__ float to_f(uint16_t b) { return __half2float(__ushort_as_half(b)); }
};

// Two 16-bit elements p[0] (low half) and p[step] (high half) as one register. Contiguous:
// one 32-bit load (p is 4-byte aligned: even element offset in an even-stride row).
template <bool Contig>
__device__ __forceinline__ uint32_t pair(const uint16_t* p, int step) {
  if constexpr (Contig) return *reinterpret_cast<const uint32_t*>(p);
  else return uint32_t(p[0]) | (uint32_t(p[step]) << 16);
}

// A(m, k) = base[m*am + k*ak], a 16x16 tile. KContig: ak == 1.
template <bool KContig>
__device__ __forceinline__ void load_a(uint32_t a[4], const uint16_t* base, int am, int ak) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const uint16_t* p = base + g * am + 2 * t * ak;
  a[0] = pair<KContig>(p, ak);
  a[1] = pair<KContig>(p + 8 * am, ak);
  a[2] = pair<KContig>(p + 8 * ak, ak);
  a[3] = pair<KContig>(p + 8 * am + 8 * ak, ak);
}

// B(k, n) = base[k*bk + n*bn], a 16x8 tile. KContig: bk == 1.
template <bool KContig>
__device__ __forceinline__ void load_b(uint32_t b[2], const uint16_t* base, int bk, int bn) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const uint16_t* p = base + 2 * t * bk + g * bn;
  b[0] = pair<KContig>(p, bk);
  b[1] = pair<KContig>(p + 8 * bk, bk);
}

// The A fragment of keys [16kk, 16kk+16) from a 16x64 f32 accumulator c[8][4] (P or dS),
// rounded to T.
template <class T>
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float (&c)[8][4], int kk) {
  a[0] = Mma<T>::pack(c[2 * kk][0], c[2 * kk][1]);
  a[1] = Mma<T>::pack(c[2 * kk][2], c[2 * kk][3]);
  a[2] = Mma<T>::pack(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = Mma<T>::pack(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// ---------------------------------------------------------------- tiles
// Copies `rows_valid` rows of D elements (row stride rs, in elements) into a 64-row shared
// tile with row stride D + 8, zero-filling rows [rows_valid, 64): padded keys must be 0, not
// garbage, because P = 0 times NaN garbage would still be NaN.
template <int D>
__device__ __forceinline__ void load_tile(uint16_t* s, const void* g, int64_t rs, int rows_valid, bool vec) {
  constexpr int LDS = D + 8, CH = D / 8;
  const uint16_t* gs = static_cast<const uint16_t*>(g);
  for (int c = threadIdx.x; c < 64 * CH; c += kThreads) {
    const int r = c / CH, col = (c % CH) * 8;
    uint16_t* dst = s + r * LDS + col;
    if (r < rows_valid) {
      const uint16_t* src = gs + int64_t(r) * rs + col;
      if (vec) {
        *reinterpret_cast<uint4*>(dst) = __ldg(reinterpret_cast<const uint4*>(src));
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) dst[e] = src[e];
      }
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
  }
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace fovea::cuda::fa
