#!/usr/bin/env bash
# The test command: installs the system packages the tests need (when it can), then runs every
# test of the workspace. Usage: bash scripts/test.sh [extra cargo test arguments]
#
# Needed beyond Rust: chromium and chromedriver (the dashboard's browser test). Installed with
# apt-get when this runs as root or with passwordless sudo; otherwise it says what to install
# and the tests that need them fail with the same hint (or skip, with SCORES_SKIP_BROWSER_TESTS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package names, by the command each provides.
declare -A packages=([chromium]=chromium [chromedriver]=chromium-driver)

missing=()
for command in "${!packages[@]}"; do
    command -v "$command" >/dev/null || missing+=("${packages[$command]}")
done
if ((${#missing[@]})); then
    if [ "${SCORES_SKIP_BROWSER_TESTS:-}" = 1 ]; then
        echo "test.sh: ${missing[*]} missing; SCORES_SKIP_BROWSER_TESTS=1 skips the tests that need them"
    elif ! command -v apt-get >/dev/null; then
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

exec cargo test --workspace --locked --no-fail-fast "$@"
