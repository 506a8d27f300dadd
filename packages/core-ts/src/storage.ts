// Storage: a native allocation shared by every tensor that views it. The JS side counts
// references (one per live Tensor); the last release frees the native memory at once
// (deterministic, as dispose()/tidy() promise). If tensors are dropped without dispose, the
// native handle's GC finalizer frees the memory as a backstop.
import native, { type StorageHandle } from '@fovea/native';

export class Storage {
  readonly handle: StorageHandle;
  readonly nbytes: number;
  readonly ordinal: number;
  private refs = 0;
  private freed = false;

  constructor(ordinal: number, nbytes: number) {
    this.handle = native.storageAlloc(ordinal, nbytes);
    this.nbytes = nbytes;
    this.ordinal = ordinal;
  }

  get isFreed(): boolean { return this.freed; }
  get refCount(): number { return this.refs; }

  retain(): void { this.refs++; }

  release(): void {
    if (--this.refs <= 0 && !this.freed) {
      this.freed = true;
      native.storageFree(this.handle);
    }
  }
}
