#!/usr/bin/env bash
# The release build of the commands, as contrib/install.sh installs them and the benchmarks
# measure them:
#   contrib/release-build.sh [SWIFT-BUILD-OPTIONS...]     e.g. --product ns-enter, --show-bin-path
# - the Swift runtime and Foundation linked statically (--static-swift-stdlib): a command starts
#   in about 12 ms instead of 21 (no dozen shared Swift libraries to map and relocate);
# - no $ORIGIN run path: the commands use system libraries only, and the loader would otherwise
#   look for each of them in a dozen directories next to the binary first;
# - the C++ runtime (libstdc++, which the Swift runtime needs) linked statically too, where the
#   toolchain has its archive: another 0.4 ms of every start (its relocations and symbol lookups),
#   which every task of a job step pays. The archive is put alone in a directory searched before
#   the compiler's own, so that the linker takes it instead of libstdc++.so (the GCC runtime
#   library exception allows this). Without the archive, libstdc++ stays a shared library.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && ! command -v swift >/dev/null 2>&1 && export PATH="/opt/swift/usr/bin:$PATH"
flags=(-c release --static-swift-stdlib --disable-local-rpath)
archive=$(clang -print-file-name=libstdc++.a 2>/dev/null || true)
if [ "${archive#/}" != "$archive" ] && [ -f "$archive" ]; then
    directory="$PWD/.build/static-libstdc++"
    mkdir -p "$directory"
    ln -sfn "$archive" "$directory/libstdc++.a"
    flags+=(-Xswiftc "-L$directory")
fi
exec swift build "${flags[@]}" "$@"
