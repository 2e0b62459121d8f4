#!/usr/bin/env bash
# Runs every fuzz target for $FUZZ_SECONDS (60) seconds each, from the seeds kept in fuzz/seeds/
# (made by fuzz/seeds/make.py), and fails on any crash, panic or failed assertion; the input
# that found it is left in fuzz/artifacts/TARGET/. Inputs grow to 1 MiB (libFuzzer's default is
# 4 KiB), so that deep nesting, long ids and endless lines are reached; every input that ever
# failed is kept as a seed and as a unit test. Needs the nightly toolchain and cargo-fuzz
# (installed here when missing). The corpus grown while fuzzing goes to a temporary directory.
#
#   bash scripts/fuzz.sh                  # every target, 60 s each
#   FUZZ_SECONDS=10 bash scripts/fuzz.sh decode
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
targets=("$@")
((${#targets[@]})) || targets=(decode sse_parser journal_reader fold)

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$corpus/$target"
    echo "fuzz.sh: $target for $seconds s"
    # -print_final_stats gives the executions and their rate at the end.
    # The pipeline fails when cargo fuzz does (pipefail); grep finding nothing is no failure.
    if ! cargo +nightly fuzz run --release "$target" "$corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -max_len=1048576 -print_final_stats=1 2>&1 |
        { grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|#[0-9]+ *DONE)|(ERROR|panicked|SUMMARY|deadly signal|Test unit written)' || true; }; then
        echo "fuzz.sh: $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzz.sh: ${#targets[@]} targets, $seconds s each, no failure"
