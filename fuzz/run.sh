#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, from its committed seeds, and prints
# what each did. Fails at the first target that finds a failing input (cargo fuzz saves it in
# fuzz/artifacts/TARGET/; copy it to fuzz/regressions/TARGET/ once fixed: the ordinary tests
# replay it).
#
#   fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). The project's toolchain is stable
# 1.95.0 and cargo-fuzz needs nightly flags (sanitizer coverage): RUSTC_BOOTSTRAP=1 allows them
# for this build only.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
targets=(dhcp server client async_server async_client decoder screen smoltcp)
export RUSTC_BOOTSTRAP=1

cargo fuzz build 2>&1 | tail -n 1
summary=()
for target in "${targets[@]}"; do
    log=$(mktemp)
    # The committed seeds are the corpus's start; new inputs stay in the (ignored) corpus dir.
    if ! cargo fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz/run.sh: $target found a failing input (fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log")
    took=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log")
    cov=$(sed -n 's/.*DONE *cov: \([0-9]*\).*/\1/p' "$log")
    summary+=("$(printf '| %s | %s | %s | %s | %s | none |' "$target" "$took" "$runs" "$((runs / (took > 0 ? took : 1)))" "$cov")")
    rm -f "$log"
done
echo
echo "| target | seconds | execs | execs/s | coverage (edges) | findings |"
echo "|---|---:|---:|---:|---:|---|"
printf '%s\n' "${summary[@]}"
