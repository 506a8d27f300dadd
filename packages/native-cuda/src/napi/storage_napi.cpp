// Storage bindings: allocate, free, read and write bytes, copy between devices, memory stats.
// Reading back copies into a fresh (non-external) ArrayBuffer: V8's sandbox rejects external
// buffers, and a copy cannot dangle after dispose().
#include <cstring>
#include "core/cuda_api.h"
#include "core/error.h"
#include "core/host_allocator.h"
#include "napi/binding.h"

namespace fovea::napi {
namespace {

void finalize_storage(Napi::Env env, Storage* s) {
  if (!s->freed) Napi::MemoryManagement::AdjustExternalMemory(env, -int64_t(s->nbytes));
  storage_delete(s);
}

Napi::Value storage_alloc_js(const Napi::CallbackInfo& info) {
  int64_t device = get_int(info, 0, "storageAlloc", "device");
  int64_t nbytes = get_int(info, 1, "storageAlloc", "nbytes");
  if (nbytes < 0) fail("storageAlloc: nbytes must be >= 0, got ", nbytes);
  if (device < -1) fail("storageAlloc: bad device ", device);
  bool zero = info.Length() > 2 && info[2].ToBoolean();
  Storage* s = storage_alloc(int(device), size_t(nbytes), zero);
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), nbytes);
  return Napi::External<Storage>::New(info.Env(), s, finalize_storage);
}

Napi::Value storage_free_js(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) fail("storageFree: expected a storage handle");
  auto* s = info[0].As<Napi::External<Storage>>().Data();
  if (s && !s->freed) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -int64_t(s->nbytes));
    storage_release(s);
  }
  return info.Env().Undefined();
}

// storageWrite(handle, byteOffset, typedArrayOrBuffer)
Napi::Value storage_write_js(const Napi::CallbackInfo& info) {
  Storage* s = get_storage(info[0], "storageWrite", "storage");
  int64_t off = get_int(info, 1, "storageWrite", "byteOffset");
  if (info.Length() < 3 || !info[2].IsTypedArray())
    fail("storageWrite: data must be a TypedArray");
  auto ta = info[2].As<Napi::TypedArray>();
  size_t n = ta.ByteLength();
  if (off < 0 || size_t(off) + n > s->nbytes)
    fail("storageWrite: writing ", n, " bytes at ", off, " exceeds the storage of ", s->nbytes,
         " bytes");
  const char* src = static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  if (n == 0) return info.Env().Undefined();
  if (s->device < 0) std::memcpy(static_cast<char*>(s->data) + off, src, n);
  else if (cuda_api()->memcpy_h2d(s->device, static_cast<char*>(s->data) + off, src, n))
    fail("storageWrite: cuda copy failed: ", cuda_api()->last_error());
  return info.Env().Undefined();
}

// storageRead(handle, byteOffset, nbytes) -> ArrayBuffer (a copy)
Napi::Value storage_read_js(const Napi::CallbackInfo& info) {
  Storage* s = get_storage(info[0], "storageRead", "storage");
  int64_t off = get_int(info, 1, "storageRead", "byteOffset");
  int64_t n = get_int(info, 2, "storageRead", "nbytes");
  if (off < 0 || n < 0 || size_t(off + n) > s->nbytes)
    fail("storageRead: reading ", n, " bytes at ", off, " exceeds the storage of ", s->nbytes,
         " bytes");
  auto buf = Napi::ArrayBuffer::New(info.Env(), size_t(n));
  if (n == 0) return buf;
  if (s->device < 0) std::memcpy(buf.Data(), static_cast<char*>(s->data) + off, size_t(n));
  else if (cuda_api()->memcpy_d2h(s->device, buf.Data(), static_cast<char*>(s->data) + off,
                                  size_t(n)))
    fail("storageRead: cuda copy failed: ", cuda_api()->last_error());
  return buf;
}

// storageCopy(dst, dstByteOffset, src, srcByteOffset, nbytes): any device to any device.
Napi::Value storage_copy_js(const Napi::CallbackInfo& info) {
  Storage* d = get_storage(info[0], "storageCopy", "dst");
  int64_t doff = get_int(info, 1, "storageCopy", "dstByteOffset");
  Storage* s = get_storage(info[2], "storageCopy", "src");
  int64_t soff = get_int(info, 3, "storageCopy", "srcByteOffset");
  int64_t n = get_int(info, 4, "storageCopy", "nbytes");
  if (n < 0 || doff < 0 || soff < 0 || size_t(doff + n) > d->nbytes ||
      size_t(soff + n) > s->nbytes)
    fail("storageCopy: range out of bounds (", n, " bytes; dst ", d->nbytes, ", src ", s->nbytes,
         ")");
  char* dp = static_cast<char*>(d->data) + doff;
  const char* sp = static_cast<const char*>(s->data) + soff;
  if (n == 0) return info.Env().Undefined();
  int rc = 0;
  if (d->device < 0 && s->device < 0) std::memcpy(dp, sp, size_t(n));
  else if (d->device < 0) rc = cuda_api()->memcpy_d2h(s->device, dp, sp, size_t(n));
  else if (s->device < 0) rc = cuda_api()->memcpy_h2d(d->device, dp, sp, size_t(n));
  else if (d->device == s->device) rc = cuda_api()->memcpy_d2d(d->device, dp, sp, size_t(n));
  else fail("storageCopy: copies between two CUDA devices go through the host for now");
  if (rc) fail("storageCopy: cuda copy failed: ", cuda_api()->last_error());
  return info.Env().Undefined();
}

Napi::Value storage_info_js(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) fail("storageInfo: expected a storage handle");
  auto* s = info[0].As<Napi::External<Storage>>().Data();
  auto o = Napi::Object::New(info.Env());
  o.Set("nbytes", double(s->nbytes));
  o.Set("device", s->device);
  o.Set("freed", s->freed);
  return o;
}

Napi::Value memory_stats_js(const Napi::CallbackInfo& info) {
  int64_t device = get_int(info, 0, "memoryStats", "device");
  auto st = memory_stats(int(device));
  auto o = Napi::Object::New(info.Env());
  o.Set("liveBytes", double(st.live_bytes));
  o.Set("liveStorages", double(st.live_storages));
  if (device < 0) o.Set("cachedBytes", double(host_cached_bytes()));
  else {
    size_t allocated = 0, reserved = 0;
    if (cuda_api()->memory_stats(int(device), &allocated, &reserved) == 0)
      o.Set("cachedBytes", double(reserved) - double(allocated));
  }
  return o;
}

// emptyCache(device): gives cached blocks of that device back to the OS / driver.
Napi::Value empty_cache_js(const Napi::CallbackInfo& info) {
  int64_t device = get_int(info, 0, "emptyCache", "device");
  if (device < 0) host_empty_cache();
  else if (cuda_api()->empty_cache(int(device))) fail("emptyCache: ", cuda_api()->last_error());
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("storageAlloc", storage_alloc_js);
FOVEA_BIND("storageFree", storage_free_js);
FOVEA_BIND("storageWrite", storage_write_js);
FOVEA_BIND("storageRead", storage_read_js);
FOVEA_BIND("storageCopy", storage_copy_js);
FOVEA_BIND("storageInfo", storage_info_js);
FOVEA_BIND("memoryStats", memory_stats_js);
FOVEA_BIND("emptyCache", empty_cache_js);

}  // namespace fovea::napi
