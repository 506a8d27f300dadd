// Types of @fovea/native: the addon's bindings (default export), the loaded path and the
// loader's report. Views are {storage, dtype, shape, strides, offset}
// with strides and offset in elements; see src/napi/binding.h.
export interface StorageHandle { readonly __brand: 'fovea.storage' }
export interface ViewArg {
  storage: StorageHandle;
  dtype: number;
  shape: number[];
  strides: number[];
  offset: number;
}
export interface CudaStatus {
  available: boolean;
  reason: string;
  driverVersion?: number;
  runtimeVersion?: number;
  devices: { name: string; totalBytes: number; computeCapability: string; smCount: number }[];
}
export interface NativeAddon {
  storageAlloc(device: number, nbytes: number, zero?: boolean): StorageHandle;
  storageFree(s: StorageHandle): void;
  storageWrite(s: StorageHandle, byteOffset: number, data: ArrayBufferView): void;
  storageRead(s: StorageHandle, byteOffset: number, nbytes: number): ArrayBuffer;
  storageCopy(dst: StorageHandle, dstOff: number, src: StorageHandle, srcOff: number, nbytes: number): void;
  storageInfo(s: StorageHandle): { nbytes: number; device: number; freed: boolean };
  memoryStats(device: number): { liveBytes: number; liveStorages: number; cachedBytes?: number };
  emptyCache(device: number): void;
  numThreads(): number;
  setNumThreads(n: number): void;
  isa(): string;
  setIsaCap(cap: 'portable' | 'avx2' | 'avx512'): void;
  cudaStatus(): CudaStatus;
  cudaCheckDevice(ordinal: number): void;
  cudaSynchronize(ordinal: number): void;
  // Paged KV cache (src/napi/paged_attn_napi.cpp; layout in src/ops/paged_attn/NOTES.md).
  // kCache/vCache [numBlocks, blockSize, Hkv, D]; index tensors i32 on the cache's device.
  pagedKvWrite(kCache: ViewArg, vCache: ViewArg, k: ViewArg, v: ViewArg, slots: ViewArg): void;
  pagedKvCopyBlocks(kCache: ViewArg, vCache: ViewArg, src: ViewArg, dst: ViewArg): void;
  pagedAttention(q: ViewArg, kCache: ViewArg, vCache: ViewArg, blockTables: ViewArg, contextLens: ViewArg,
    cuSeqlensQ: ViewArg, out: ViewArg, scale: number): void;
  // Fused AdamW (src/napi/adamw_napi.cpp; formula in src/ops/adamw/adamw.h). Updates param,
  // expAvg, expAvgSq (f32) and master (f32; required for bf16/f16 params, null for f32) in
  // place; step is t after incrementing (>= 1). CPU only for now.
  adamwStep(param: ViewArg, grad: ViewArg, expAvg: ViewArg, expAvgSq: ViewArg, master: ViewArg | null,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void;
  // Σ|x|^normType accumulated in f64 (max |x| for normType = Infinity); x contiguous, float.
  gradNormPow(x: ViewArg, normType: number): number;
  [binding: string]: any;
}
declare const addon: NativeAddon;
/** Path of the fovea_native.node that was loaded. */
export const addonPath: string;
/** One lookup attempt of the loader (loader/load.js), in order. */
export interface LoadAttempt { path: string; source: string; loaded: boolean; problem: string | null }
/** How the addon was found and what was decided about CUDA (see loader/cuda.js). */
export const loadReport: {
  source: string;
  attempts: LoadAttempt[];
  cuda: {
    mode: 'auto' | 'cpu' | 'cuda';
    /** enabled: CUDA may be used; unavailable: no driver, nothing expected CUDA; disabled: fell back to the CPU. */
    state: 'enabled' | 'unavailable' | 'disabled';
    reason?: string;
    [key: string]: unknown;
  };
};
export default addon;
