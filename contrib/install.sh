#!/usr/bin/env bash
# Installs the toolbox: dependencies, a release build, the commands into PREFIX/bin (default
# /usr/local), shell completions, man pages and the site hooks (PREFIX/share/toolbox/hooks.d).
#   contrib/install.sh [PREFIX]
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:-/usr/local}"
[ -d /opt/swift/usr/bin ] && ! command -v swift >/dev/null 2>&1 && export PATH="/opt/swift/usr/bin:$PATH"
./contrib/install-deps.sh
# The release build (contrib/release-build.sh says how it is linked, and why).
./contrib/release-build.sh
bin=$(./contrib/release-build.sh --show-bin-path)
tools=(edf-merge edf-expand img-pull img-squash img-build ns-enter hook-run toolbox-hook toolbox-srun toolbox-sbatch toolbox-salloc)
install -d "$prefix/bin" "$prefix/share/man/man1" "$prefix/share/bash-completion/completions" \
    "$prefix/share/zsh/site-functions" "$prefix/share/fish/vendor_completions.d"
for tool in "${tools[@]}"; do
    install -m 0755 "$bin/$tool" "$prefix/bin/$tool"
    install -m 0644 "contrib/man/$tool.1" "$prefix/share/man/man1/$tool.1"
    install -m 0644 "completions/bash/$tool" "$prefix/share/bash-completion/completions/$tool"
    install -m 0644 "completions/zsh/_$tool" "$prefix/share/zsh/site-functions/_$tool"
    install -m 0644 "completions/fish/$tool.fish" "$prefix/share/fish/vendor_completions.d/$tool.fish"
done
# The site hooks (contrib/hooks.d, with their lib/), for a site to copy into
# $TOOLBOX_SYSCONF_PATH/hooks.d (default /etc/toolbox/hooks.d) and configure in hooks.conf.d.
install -d "$prefix/share/toolbox/hooks.d/lib"
install -m 0755 contrib/hooks.d/*.sh "$prefix/share/toolbox/hooks.d/"
install -m 0644 contrib/hooks.d/lib/common.sh "$prefix/share/toolbox/hooks.d/lib/common.sh"
# enroot's hooks source ${ENROOT_LIBRARY_PATH}/common.sh: the toolbox's version of it.
install -d "$prefix/share/toolbox/hooks.d/lib/enroot"
install -m 0644 contrib/hooks.d/lib/enroot/common.sh "$prefix/share/toolbox/hooks.d/lib/enroot/common.sh"
# The srun, sbatch and salloc wrappers, in a directory of their own: users (or the site's profile)
# put it first in PATH to get srun/sbatch/salloc --environment (they find toolbox-srun,
# toolbox-sbatch and toolbox-salloc on PATH, and the real commands after themselves).
install -d "$prefix/lib/toolbox/bin"
install -m 0755 bin/srun "$prefix/lib/toolbox/bin/srun"
install -m 0755 bin/sbatch "$prefix/lib/toolbox/bin/sbatch"
install -m 0755 bin/salloc "$prefix/lib/toolbox/bin/salloc"
echo "install: installed ${tools[*]} into $prefix/bin, the site hooks into $prefix/share/toolbox/hooks.d," \
    "the srun, sbatch and salloc wrappers into $prefix/lib/toolbox/bin (put it first in PATH)" >&2
