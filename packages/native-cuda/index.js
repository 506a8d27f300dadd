// Loads the native addon (fovea_native.node) and tells it where the CUDA sidecar lives.
// Order: a local build in this package (developers; `npm run build:native`), else an error
// that says how to build it. Prebuilt per-platform packages come with the install issue.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const candidates = [
  process.env.FOVEA_NATIVE_PATH,
  join(here, 'build', 'Release', 'fovea_native.node'),
  join(here, 'build-debug', 'Debug', 'fovea_native.node'),
].filter(Boolean);

function load() {
  const tried = [];
  for (const path of candidates) {
    if (!existsSync(path)) { tried.push(`${path} (not found)`); continue; }
    try {
      return { addon: require(path), path };
    } catch (err) {
      tried.push(`${path} (${err.message})`);
    }
  }
  throw new Error(
    'fovea: could not load the native addon @fovea/native.\n' +
    `Tried:\n  ${tried.join('\n  ')}\n` +
    'Build it from source with `npm run build:native` at the repository root ' +
    '(needs cmake, a C++17 compiler, and optionally nvcc for the CUDA sidecar).',
  );
}

const { addon, path } = load();
export const addonPath = path;
export default addon;
