#!/usr/bin/env bash
# Regenerates the files that are generated from the argument parser and committed:
# shell completions under completions/, man pages under contrib/man/ and the help dumps
# (contrib/man/help/*.json) that the tests compare against the built commands. Run after changing any command's options;
# Tests/CommandTests/GeneratedFilesTests.swift fails while they are out of date.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build --product edf-merge >/dev/null
swift build --product edf-expand >/dev/null
swift build --product img-pull >/dev/null
swift build --product img-squash >/dev/null
swift build --product img-build >/dev/null
swift build --product ns-enter >/dev/null
swift build --product hook-run >/dev/null
swift build --product toolbox-hook >/dev/null
swift build --product toolbox-srun >/dev/null
swift build --product toolbox-sbatch >/dev/null
swift build --product toolbox-salloc >/dev/null
bin=$(swift build --show-bin-path)
mkdir -p completions/bash completions/zsh completions/fish
for tool in edf-merge edf-expand img-pull img-squash img-build ns-enter hook-run toolbox-hook toolbox-srun toolbox-sbatch toolbox-salloc; do
    "$bin/$tool" --generate-completion-script bash > "completions/bash/$tool"
    "$bin/$tool" --generate-completion-script zsh > "completions/zsh/_$tool"
    "$bin/$tool" --generate-completion-script fish > "completions/fish/$tool.fish"
done
mkdir -p contrib/man/help
for tool in edf-merge edf-expand img-pull img-squash img-build ns-enter hook-run toolbox-hook toolbox-srun toolbox-sbatch toolbox-salloc; do
    "$bin/$tool" --experimental-dump-help > "contrib/man/help/$tool.json"
done
# swift-argument-parser's generate-manual plugin, with a fixed date so that output is reproducible.
swift package generate-manual --date 2026-11-29 --section 1 >/dev/null
for tool in edf-merge edf-expand img-pull img-squash img-build ns-enter hook-run toolbox-hook toolbox-srun toolbox-sbatch toolbox-salloc; do
    cp ".build/plugins/GenerateManual/outputs/$tool/$tool.1" "contrib/man/$tool.1"
done
echo "updated completions/ and contrib/man/ for: edf-merge edf-expand img-pull img-squash img-build ns-enter hook-run toolbox-hook toolbox-srun toolbox-sbatch toolbox-salloc"
