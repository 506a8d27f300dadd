// Types of the native addon's bindings. Views are {storage, dtype, shape, strides, offset}
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
  [binding: string]: any;
}
declare const addon: NativeAddon;
export const addonPath: string;
export default addon;
