// @fovea/native: loads the native addon (fovea_native.node) and decides whether CUDA may be
// used, then exports the addon. Where the addon comes from: loader/load.js (a local build,
// then the same-version prebuilt package for this machine, else an error saying how to build
// from source). CUDA: loader/cuda.js (driver and sidecar looked up on disk, then probed in a
// child process; a failure falls back to the CPU with one loud message, or throws when
// FOVEA_DEVICE=cuda). `npx fovea-native doctor` shows everything this file decided.
import { loadErrorMessage, OWN_VERSION, PACKAGE_ROOT, tryLoadAddon } from './loader/load.js';
import { setupCuda } from './loader/cuda.js';
import { packageNames } from './loader/platform.js';
import { join } from 'node:path';

const loaded = tryLoadAddon();
if (!loaded.addon) throw new Error(loadErrorMessage(loaded.attempts));

const { addon, cuda } = setupCuda(loaded.addon, {
  addonPath: loaded.path,
  cudaPackage: packageNames().cuda,
  ownVersion: OWN_VERSION,
  resolveFrom: join(PACKAGE_ROOT, 'index.js'),
});

/** Path of the fovea_native.node that was loaded. */
export const addonPath = loaded.path;
/** How the loader got here: the attempts in order and the CUDA decision (for `fovea doctor`). */
export const loadReport = { source: loaded.source, attempts: loaded.attempts, cuda };
export default addon;
