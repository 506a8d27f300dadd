#!/usr/bin/env bash
# Install smoke test (`npm run smoke:install`): what a user gets from `npm install` on this
# machine, with no compiler. Packs the CPU platform package for this machine, @fovea/native and
# @fovea/core; installs the tarballs into a fresh npm project in a temporary directory outside
# the repository, with a PATH that holds node, npm, npx and sh only (no cc, gcc, g++, c++,
# clang, cmake, make, nvcc); then imports @fovea/core, checks a matmul and a flash-attention
# call against plain JavaScript, and runs `npx fovea-native doctor`.
#
#   tools/install-smoke.sh                 pack from the dev build (packages/native-cuda/build/Release; fast, CI)
#   tools/install-smoke.sh --prebuilt      install this machine's tarballs from npm/packed/ as left by
#                                          `npm run build:prebuilt` (the CUDA sidecar package too, when built)
# FOVEA_SMOKE_KEEP=1 keeps the temporary directory. Needs the npm registry for node-addon-api.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-dev}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fovea-install-smoke.XXXXXX")
case "$WORK" in "$REPO"/*) echo "smoke: $WORK is inside the repository" >&2; exit 1 ;; esac
cleanup() { if [ "${FOVEA_SMOKE_KEEP:-0}" = 1 ]; then echo "smoke: kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

# 1. The tarballs.
TARBALLS="$WORK/tarballs"
mkdir -p "$TARBALLS"
if [ "$MODE" = --prebuilt ]; then
  cp "$REPO"/npm/packed/fovea-native-linux-"$(node -p process.arch)"-*.tgz "$REPO"/npm/packed/fovea-native-[0-9]*.tgz \
     "$REPO"/npm/packed/fovea-core-*.tgz "$TARBALLS"/
elif [ "$MODE" = dev ]; then
  node "$REPO/tools/prebuild/prebuild.mjs" --from-dev-build --no-cuda --stage-dir "$WORK/stage" --out "$TARBALLS"
else
  echo "usage: tools/install-smoke.sh [--prebuilt]" >&2; exit 2
fi
ls -l "$TARBALLS"

# 2. A PATH without compilers or build tools.
BIN="$WORK/bin"
mkdir -p "$BIN"
for tool in node npm npx sh; do ln -s "$(command -v "$tool")" "$BIN/$tool"; done
for tool in cc gcc g++ c++ clang clang++ cmake make ninja nvcc; do
  if PATH="$BIN" command -v "$tool" >/dev/null 2>&1; then echo "smoke: $tool is still on the stripped PATH" >&2; exit 1; fi
done

# 3. Install like a user, then check that no install script could have compiled anything.
APP="$WORK/app"
mkdir -p "$APP"
cp "$REPO/tools/prebuild/install-smoke-check.mjs" "$APP/smoke.mjs"
cd "$APP"
echo '{ "name": "fovea-install-smoke", "version": "1.0.0", "private": true, "type": "module" }' > package.json
PATH="$BIN" npm install --no-audit --no-fund --loglevel=error "$TARBALLS"/*.tgz
node -e '
  const fs = require("fs");
  for (const p of ["@fovea/native", "@fovea/core"]) {
    const s = JSON.parse(fs.readFileSync(`node_modules/${p}/package.json`, "utf8")).scripts ?? {};
    for (const k of ["preinstall", "install", "postinstall"]) if (s[k]) throw new Error(`${p} has an ${k} script: ${s[k]}`);
  }
  if (fs.existsSync("node_modules/@fovea/native/build")) throw new Error("@fovea/native shipped or built a build/ directory");'

# 4. Use it.
PATH="$BIN" node smoke.mjs
PATH="$BIN" npx --no-install fovea-native doctor
echo "smoke: install smoke test passed"
