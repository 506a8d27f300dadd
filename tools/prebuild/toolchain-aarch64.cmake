# CMake toolchain for cross compiling the CPU engine to Linux aarch64 (glibc) on an x86-64
# Debian/Ubuntu host: `apt-get install g++-aarch64-linux-gnu` provides the compilers and the
# target's glibc/libstdc++ under /usr/aarch64-linux-gnu. Used by
# `npm run build:prebuilt -- --target linux-arm64` (tools/prebuild/prebuild.mjs).
#
# Invariants: no CUDA (the root CMakeLists.txt turns the sidecar off when CMAKE_CROSSCOMPILING);
# the x86 SIMD kernels compile away (#if defined(__x86_64__)), so the binary uses the portable
# kernels. When qemu-aarch64 is installed, CMAKE_CROSSCOMPILING_EMULATOR lets ctest run
# fovea_native_tests under emulation.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(FOVEA_CROSS_PREFIX aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${FOVEA_CROSS_PREFIX}-gcc)
set(CMAKE_CXX_COMPILER ${FOVEA_CROSS_PREFIX}-g++)
set(FOVEA_CROSS_SYSROOT /usr/${FOVEA_CROSS_PREFIX})

# Libraries and headers come from the target's sysroot only; build tools from the host.
set(CMAKE_FIND_ROOT_PATH ${FOVEA_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(FOVEA_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(FOVEA_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FOVEA_QEMU_AARCH64} -L ${FOVEA_CROSS_SYSROOT})
endif()
