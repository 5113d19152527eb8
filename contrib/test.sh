#!/usr/bin/env bash
# The test command: installs the dependencies, builds everything (a warning in the project's own
# code fails the build), then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && ! command -v swift >/dev/null 2>&1 && export PATH="/opt/swift/usr/bin:$PATH"
./contrib/install-deps.sh
# ns-enter's tests mount FUSE file systems as an ordinary user: Debian's udev makes /dev/fuse 0666,
# machines without udev (containers, these VMs) leave it 0600.
if [ -e /dev/fuse ] && [ "$(id -u)" -eq 0 ]; then chmod 666 /dev/fuse; fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift build --build-tests 2>&1 | tee "$log"
if grep -E "^$PWD/(Sources|Tests)/.*: warning:" "$log" | sort -u | grep .; then
    echo "test: error: the build has warnings in the project's code (listed above); fix them" >&2
    exit 1
fi
swift test --skip-build 2>&1
