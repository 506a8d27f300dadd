// The serial GotoBLAS/BLIS loop nest of the CPU GEMM: pack a kc×nc panel of B and an mc×kc
// block of A (converting bf16/f16 to f32 and folding alpha into A while packing), then
// sweep MR×NR micro-kernel tiles over them. Strides are arbitrary: transposed operands only
// change the order in which packing walks memory. gemm_cpu (matmul_cpu.cpp) splits the work
// across threads and calls this once per sub-problem.
//
// Loop nest (C is M×N; vectors of the micro-kernel run along N):
//   jc over N by nc   ─ pack B[pc:pc+kc, jc:jc+nc] (nc/NR micro-panels, kc×NR each; L2)
//    pc over K by kc  ─ first kc block applies beta, later ones accumulate (beta_eff = 1)
//     ic over M by mc ─ pack A[ic:ic+mc, pc:pc+kc] (mc/MR micro-panels, MR×kc each)
//      ir over mc by MR ─ one A micro-panel, stays in L1 across the jr loop
//       jr over nc by NR ─ micro-kernel(A micro-panel from L1, B micro-panel from L2)
// ir outside jr is the transpose of BLIS's usual order: consecutive tiles then walk along
// C's rows instead of jumping MR rows down a possibly power-of-two-strided C, which measured
// ~25% faster at N = 4096 (NOTES.md). Blocking::rows_outer = false restores BLIS's order.
//
// When C is f32 with unit column stride the kernel updates C in place. Otherwise (bf16/f16/
// f64 output, or a C whose columns are not contiguous) the nest runs on an f32 scratch tile
// (≤ 8 MiB), accumulating over all of K before one rounding store, as the header promises
// ("accumulate in f32 then round on store").
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <type_traits>
#include "core/error.h"
#include "ops/matmul/gemm_convert.h"
#include "ops/matmul/gemm_internal.h"

namespace fovea {
namespace gemm {
namespace {

// A 64-byte aligned float buffer that only grows; one per thread per role.
struct Buffer {
  float* ptr = nullptr;
  size_t cap = 0;
  ~Buffer() { std::free(ptr); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(ptr);
      size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      ptr = static_cast<float*>(std::aligned_alloc(64, bytes));
      FOVEA_CHECK(ptr, "gemm_cpu: out of memory allocating a ", bytes, "-byte packing buffer");
      cap = n;
    }
    return ptr;
  }
};
thread_local Buffer tl_apack, tl_bpack, tl_scratch;

template <class T> inline float to_f32(const T* p) { return float(load(p)); }
constexpr int64_t kRun = 256;  // conversion chunk (floats) for the packing loops below

// Packs rows [0, mc) × cols [0, kc) of A (element (i, k) at a + i·rs + k·cs) into
// MR-row micro-panels: dst[panel][k*MR + i] = alpha · A(i, k); rows past mc are zero.
// Unit-stride sources are converted a contiguous run at a time (gemm_convert.h).
template <class T>
void pack_a(const T* a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, float alpha,
            int MR, float* dst) {
  alignas(64) float run[kRun];
  for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += kc * MR) {
    const int64_t mr = std::min<int64_t>(MR, mc - i0);
    const T* src = a + i0 * rs;
    if (mr < MR) std::fill(dst, dst + kc * MR, 0.f);
    if (rs == 1) {  // A stored transposed: each k is a contiguous run of mr ≤ MR rows
      for (int64_t k = 0; k < kc; ++k) to_f32_run(src + k * cs, dst + k * MR, mr, alpha);
    } else if (cs == 1) {  // row-major A: convert a run of a row, write it with stride MR
      for (int64_t i = 0; i < mr; ++i)
        for (int64_t k0 = 0; k0 < kc; k0 += kRun) {
          const int64_t n = std::min(kRun, kc - k0);
          to_f32_run(src + i * rs + k0, run, n, alpha);
          for (int64_t k = 0; k < n; ++k) dst[(k0 + k) * MR + i] = run[k];
        }
    } else {
      for (int64_t i = 0; i < mr; ++i)
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = alpha * to_f32(src + i * rs + k * cs);
    }
  }
}

// Packs rows [0, kc) × cols [0, nc) of B (element (k, j) at b + k·rs + j·cs) into
// NR-column micro-panels: dst[panel][k*NR + j] = B(k, j); columns past nc are zero.
template <class T>
void pack_b(const T* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, int NR, float* dst) {
  alignas(64) float run[kRun];
  for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += kc * NR) {
    const int64_t nr = std::min<int64_t>(NR, nc - j0);
    const T* src = b + j0 * cs;
    if (nr < NR) std::fill(dst, dst + kc * NR, 0.f);
    if (cs == 1) {  // row-major B: each k is a contiguous run of nr ≤ NR columns
      for (int64_t k = 0; k < kc; ++k) to_f32_run(src + k * rs, dst + k * NR, nr, 1.f);
    } else if (rs == 1) {  // B stored transposed: convert a run of a column, stride-NR write
      for (int64_t j = 0; j < nr; ++j)
        for (int64_t k0 = 0; k0 < kc; k0 += kRun) {
          const int64_t n = std::min(kRun, kc - k0);
          to_f32_run(src + j * cs + k0, run, n, 1.f);
          for (int64_t k = 0; k < n; ++k) dst[(k0 + k) * NR + j] = run[k];
        }
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t j = 0; j < nr; ++j) dst[k * NR + j] = to_f32(src + k * rs + j * cs);
    }
  }
}

template <class F> void with_input_type(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); break;
    case DType::BF16: f(bf16{}); break;
    case DType::F16: f(f16{}); break;
    default: fail("gemm_cpu: packed path takes f32/bf16/f16 inputs, got ", dtype_name(t));
  }
}

// C (f32, unit column stride, row stride ldc) [m×n] = alpha·A·B + beta·C for one
// sub-problem whose A/B element types are TA/TB.
template <class TA, class TB>
void blocked_f32(const TA* a, int64_t a_rs, int64_t a_cs, const TB* b, int64_t b_rs,
                 int64_t b_cs, float* c, int64_t ldc, int64_t M, int64_t N, int64_t K,
                 float alpha, float beta, const KernelInfo& kern, const Blocking& bl) {
  const int MR = kern.mr, NR = kern.nr;
  float* bpack = tl_bpack.get(size_t(bl.kc) * size_t((std::min(bl.nc, N) + NR - 1) / NR * NR));
  float* apack = tl_apack.get(size_t(bl.kc) * size_t((std::min(bl.mc, M) + MR - 1) / MR * MR));
  alignas(64) float edge[32 * 64];  // one MR×NR tile for partial tiles (MR·NR ≤ 2048)
  for (int64_t jc = 0; jc < N; jc += bl.nc) {
    const int64_t nc = std::min(bl.nc, N - jc);
    for (int64_t pc = 0; pc < K; pc += bl.kc) {
      const int64_t kc = std::min(bl.kc, K - pc);
      const float beta_eff = pc == 0 ? beta : 1.f;
      pack_b(b + pc * b_rs + jc * b_cs, b_rs, b_cs, kc, nc, NR, bpack);
      for (int64_t ic = 0; ic < M; ic += bl.mc) {
        const int64_t mc = std::min(bl.mc, M - ic);
        pack_a(a + ic * a_rs + pc * a_cs, a_rs, a_cs, mc, kc, alpha, MR, apack);
        // One MR×NR tile: C[ic+ir.., jc+jr..] from A micro-panel ir and B micro-panel jr.
        auto tile = [&](int64_t ir, int64_t jr) {
          const int64_t mr = std::min<int64_t>(MR, mc - ir), nr = std::min<int64_t>(NR, nc - jr);
          const float* ap = apack + ir * kc;
          const float* bp = bpack + jr * kc;
          float* ct = c + (ic + ir) * ldc + (jc + jr);
          if (mr == MR && nr == NR) return kern.fn(kc, ap, bp, ct, ldc, beta_eff);
          // Edge tile: compute the full padded tile aside, merge the valid part.
          kern.fn(kc, ap, bp, edge, NR, 0.f);
          for (int64_t i = 0; i < mr; ++i)
            for (int64_t j = 0; j < nr; ++j) {
              float& dst = ct[i * ldc + j];
              const float v = edge[i * NR + j];
              dst = beta_eff == 0.f ? v : v + beta_eff * dst;
            }
        };
        if (bl.rows_outer) {
          for (int64_t ir = 0; ir < mc; ir += MR)
            for (int64_t jr = 0; jr < nc; jr += NR) tile(ir, jr);
        } else {
          for (int64_t jr = 0; jr < nc; jr += NR)
            for (int64_t ir = 0; ir < mc; ir += MR) tile(ir, jr);
        }
      }
    }
  }
}

// C[i, j] = s[i, j] + beta·C[i, j] with C of any float dtype and strides; beta == 0 never
// reads C. Rows of a unit-stride f32/bf16/f16 C are stored a run at a time; f64 C (and
// gapped C) take the scalar path, which keeps beta·C in double.
template <class TC>
void merge_scratch(const float* s, int64_t m, int64_t n, TC* c, int64_t rs, int64_t cs,
                   float beta) {
  alignas(64) float run[kRun];
  for (int64_t i = 0; i < m; ++i) {
    const float* srow = s + i * n;
    TC* crow = c + i * rs;
    if (cs == 1 && !std::is_same<TC, double>::value) {
      for (int64_t j0 = 0; j0 < n; j0 += kRun) {
        const int64_t len = std::min(kRun, n - j0);
        const float* src = srow + j0;
        if (beta != 0.f) {
          for (int64_t j = 0; j < len; ++j) run[j] = srow[j0 + j] + beta * float(load(crow + j0 + j));
          src = run;
        }
        from_f32_run(src, crow + j0, len);
      }
      continue;
    }
    for (int64_t j = 0; j < n; ++j) {
      TC* dst = crow + j * cs;
      const double v = srow[j];
      store(dst, beta == 0.f ? v : v + double(beta) * double(load(dst)));
    }
  }
}

Blocking g_override{0, 0, 0};
int g_override_order = -1;

// Size in bytes of cpu0's level-`level` data (or unified) cache from sysfs, or `fallback`.
int64_t read_cache_bytes(int level, int64_t fallback) {
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream fl(dir + "level"), ft(dir + "type"), fs(dir + "size");
    int lv = 0;
    std::string type, size;
    if (!(fl >> lv) || !(ft >> type) || !(fs >> size) || size.empty()) continue;
    if (lv != level || type == "Instruction") continue;
    int64_t v = std::atoll(size.c_str());
    if (size.back() == 'K') v <<= 10;
    else if (size.back() == 'M') v <<= 20;
    if (v > 0) return v;
  }
  return fallback;
}

}  // namespace

void set_blocking_override(int64_t mc, int64_t kc, int64_t nc, int rows_outer) {
  g_override = {mc, kc, nc};
  g_override_order = rows_outer;
}

// Measured on a 2-core Sapphire Rapids VM (NOTES.md): the ir-outside-jr order, which keeps
// one A micro-panel (MR × kc) in L1 and streams B micro-panels from L2, beats the classic
// BLIS order by ~25% at N = 4096, because consecutive tiles then share C's rows (and pages)
// instead of jumping MR rows of a power-of-two-strided C each call.
//   kc: the A micro-panel takes about a third of L1d (kc = 256 for 48 KiB and MR = 14).
//   nc: the packed B panel (kc × nc) takes about half of L2.
//   mc: the packed A block (mc × kc) takes about a sixth of L2 (only a packing granule).
Blocking blocking_for(const KernelInfo& k) {
  static const int64_t l1 = read_cache_bytes(1, 32 << 10);
  static const int64_t l2 = read_cache_bytes(2, 1 << 20);
  Blocking b;
  b.rows_outer = true;
  b.kc = std::max<int64_t>(64, l1 / 3 / (k.mr * 4) / 64 * 64);
  b.nc = std::max<int64_t>(k.nr, (l2 / 2) / (b.kc * 4) / k.nr * k.nr);
  b.mc = std::max<int64_t>(k.mr, (l2 / 6) / (b.kc * 4) / k.mr * k.mr);
  if (g_override_order >= 0) b.rows_outer = g_override_order != 0;
  if (g_override.kc > 0) b.kc = g_override.kc;
  if (g_override.mc > 0) b.mc = std::max<int64_t>(k.mr, g_override.mc / k.mr * k.mr);
  if (g_override.nc > 0) b.nc = std::max<int64_t>(k.nr, g_override.nc / k.nr * k.nr);
  return b;
}

void gemm_blocked_serial(const GemmParams& p, const KernelInfo& kern) {
  FOVEA_CHECK(kern.mr * kern.nr <= 2048, "gemm: micro-kernel tile ", kern.mr, "x", kern.nr,
              " exceeds the 2048-float edge buffer in blocked_f32");
  const Blocking bl = blocking_for(kern);
  const size_t ea = dtype_size(p.a_dtype), eb = dtype_size(p.b_dtype), ec = dtype_size(p.c_dtype);
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    const char* a = static_cast<const char*>(p.a) + bi * p.a_batch * int64_t(ea);
    const char* b = static_cast<const char*>(p.b) + bi * p.b_batch * int64_t(eb);
    char* c = static_cast<char*>(p.c) + bi * p.c_batch * int64_t(ec);
    with_input_type(p.a_dtype, [&](auto ta) {
      with_input_type(p.b_dtype, [&](auto tb) {
        using TA = decltype(ta);
        using TB = decltype(tb);
        const TA* A = reinterpret_cast<const TA*>(a);
        const TB* B = reinterpret_cast<const TB*>(b);
        if (p.c_dtype == DType::F32 && p.c_cs == 1) {
          blocked_f32(A, p.a_rs, p.a_cs, B, p.b_rs, p.b_cs, reinterpret_cast<float*>(c), p.c_rs,
                      p.M, p.N, p.K, p.alpha, p.beta, kern, bl);
          return;
        }
        // Scratch path: full-K f32 accumulation per tm×tn tile, then one rounding store.
        // Each tile re-packs its B panel, so tiles are tall (up to ~8 MiB of scratch).
        const int64_t tn = std::min(bl.nc, p.N);
        const int64_t tm = std::min(p.M, std::max(bl.mc, (int64_t(2) << 20) / tn));
        float* s = tl_scratch.get(size_t(tm) * size_t(tn));
        for (int64_t i0 = 0; i0 < p.M; i0 += tm)
          for (int64_t j0 = 0; j0 < p.N; j0 += tn) {
            const int64_t m = std::min(tm, p.M - i0), n = std::min(tn, p.N - j0);
            blocked_f32(A + i0 * p.a_rs, p.a_rs, p.a_cs, B + j0 * p.b_cs, p.b_rs, p.b_cs, s, n,
                        m, n, p.K, p.alpha, 0.f, kern, bl);
            dispatch_float(p.c_dtype, [&](auto tc) {
              using TC = decltype(tc);
              TC* C = reinterpret_cast<TC*>(c) + i0 * p.c_rs + j0 * p.c_cs;
              merge_scratch(s, m, n, C, p.c_rs, p.c_cs, p.beta);
            });
          }
      });
    });
  }
}

KernelInfo kernel_for(Isa i) {
  switch (i) {
    case Isa::Avx512: return kernel_avx512();
    case Isa::Avx2: return kernel_avx2();
    default: return kernel_portable();
  }
}

}  // namespace gemm
}  // namespace fovea
