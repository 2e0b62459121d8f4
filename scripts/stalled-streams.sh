#!/usr/bin/env bash
# Clients of GET /scores that stop reading, during full-speed ingest: what they cost the service.
#
# Starts `scores simulate --rate max --ids` (the simulator's defaults otherwise: 200 students,
# 1,000 exams) and `scores serve --fsync always` on free loopback ports, lets ingest run, then
# opens $CLIENTS (500) streams from the first event that read their status line and nothing more,
# and holds them for $SECONDS_STALLED (20) s. Reports, before and while they are held: the
# service's RSS, its ingest rate, its CPU-seconds, /healthz's time, how many streams were
# accepted and how many refused (503 too_many_streams). Fails when the RSS grows by more than
# $MAX_RSS_GROWTH_MB (1024) or when more streams were accepted than --max-streams allows:
# memory, not time, so the bound holds on a slow machine too. Everything stops by itself.
#
#   bash scripts/stalled-streams.sh
#   SCORES_BIN=/path/to/old/scores MAX_STREAMS= bash scripts/stalled-streams.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/.."

clients=${CLIENTS:-500}
stalled_for=${SECONDS_STALLED:-20}
max_growth_mb=${MAX_RSS_GROWTH_MB:-1024}
max_streams=${MAX_STREAMS-128}
bin=${SCORES_BIN:-${CARGO_TARGET_DIR:-target}/release/scores}
if [ -z "${SCORES_BIN:-}" ]; then
    cargo build --release --locked -p scores-cli >&2
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(free_port)
port=$(free_port)
data=$(mktemp -d)
cleanup() { kill "${serve_pid:-}" "${sim_pid:-}" "${clients_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

"$bin" simulate --rate max --ids --listen "127.0.0.1:$sim_port" 2>"$data/simulate.log" &
sim_pid=$!
streams_arg=()
[ -n "$max_streams" ] && streams_arg=(--max-streams "$max_streams")
RUST_LOG=warn "$bin" serve --upstream "http://127.0.0.1:$sim_port/scores" --listen "127.0.0.1:$port" \
    --data-dir "$data/scores" --fsync always "${streams_arg[@]}" 2>"$data/serve.log" &
serve_pid=$!
base="http://127.0.0.1:$port"

# GET $1 on the service: with `seq`, /readyz's sequence number (0 until it answers); with `ms`,
# the milliseconds /healthz took. Python, so the script needs nothing but python3.
ask() {
    python3 - "$base" "$1" <<'PY' 2>/dev/null || echo 0
import json, sys, time, urllib.request
base, what = sys.argv[1], sys.argv[2]
if what == "seq":
    print(json.load(urllib.request.urlopen(base + "/readyz", timeout=10))["seq"])
else:
    start = time.perf_counter()
    urllib.request.urlopen(base + "/healthz", timeout=10).read()
    print(f"{(time.perf_counter() - start) * 1000:.1f}")
PY
}
seq_now() { ask seq; }
rss_mb() { awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$serve_pid/status"; }
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$serve_pid/stat"; }
healthz_ms() { ask ms; }
# Events made visible per second over $1 seconds.
rate() {
    local from to
    from=$(seq_now); sleep "$1"; to=$(seq_now)
    echo $(( (to - from) / $1 ))
}

for _ in $(seq 100); do [ "$(seq_now)" != 0 ] && break; sleep 0.1; done
for pid in "$sim_pid" "$serve_pid"; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$(seq_now)" = 0 ]; then
        echo "stalled-streams: the service did not start; its log:" >&2
        cat "$data/serve.log" "$data/simulate.log" >&2
        exit 2
    fi
done
sleep 3
rss_before=$(rss_mb)
cpu_before=$(cpu_s)
rate_before=$(rate 5)
cpu_idle_window=$(python3 -c "print(round($(cpu_s) - $cpu_before, 2))")
healthz_before=$(healthz_ms)

# The stalled clients: each sends its request, reads the status line, then never reads again.
python3 - "$port" "$clients" "$stalled_for" >"$data/clients.out" <<'PY' &
import socket, sys, time
port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks, accepted, refused, other = [], 0, 0, 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    # A small receive buffer, as a client that stops reading leaves the server's to fill.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /scores?after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    socks.append(s)
for s in socks:
    s.settimeout(10)
    line = b""
    while not line.endswith(b"\r\n"):
        byte = s.recv(1)
        if not byte:
            break
        line += byte
    if line.startswith(b"HTTP/1.1 200"):
        accepted += 1
    elif line.startswith(b"HTTP/1.1 503"):
        refused += 1
        s.close()
    else:
        other += 1
print(accepted, refused, other, flush=True)
time.sleep(hold)
PY
clients_pid=$!

peak_rss=$rss_before
cpu_stalled_from=$(cpu_s)
from_seq=$(seq_now)
started=$(date +%s.%N)
half=$((stalled_for / 2))
for second in $(seq "$stalled_for"); do
    sleep 1
    now=$(rss_mb)
    [ "$now" -gt "$peak_rss" ] && peak_rss=$now
    if [ "$second" = "$half" ]; then
        half_seq=$(seq_now)
        half_at=$(date +%s.%N)
    fi
done
to_seq=$(seq_now)
elapsed=$(python3 -c "import time; print(time.time() - $started)")
rate_stalled=$(python3 -c "print(round(($to_seq - $from_seq) / $elapsed))")
# The second half alone: by then every accepted stream has filled its socket and stalled.
rate_late=$(python3 -c "import time; print(round(($to_seq - $half_seq) / (time.time() - $half_at)))")
cpu_stalled=$(python3 -c "print(round($(cpu_s) - $cpu_stalled_from, 2))")
healthz_stalled=$(healthz_ms)
read -r accepted refused other <"$data/clients.out" || { accepted=?; refused=?; other=?; }
wait "$clients_pid" 2>/dev/null || true

growth=$((peak_rss - rss_before))
echo "| workload | simulate --rate max --ids (200 students, 1,000 exams) -> serve --fsync always, ${clients} stalled GET /scores?after=0 for ${stalled_for} s |"
echo "| streams | ${accepted} accepted, ${refused} refused (503), ${other} other; --max-streams ${max_streams:-none} |"
echo "| RSS | ${rss_before} MB before, peak ${peak_rss} MB while stalled (+${growth} MB) |"
echo "| ingest | ${rate_before} events/s before (${cpu_idle_window} CPU-s in 5 s), ${rate_stalled} events/s while stalled (${cpu_stalled} CPU-s in ${stalled_for} s), ${rate_late} events/s in its second half |"
echo "| /healthz | ${healthz_before} ms before, ${healthz_stalled} ms while stalled |"

status=0
if [ "$growth" -gt "$max_growth_mb" ]; then
    echo "stalled-streams: the RSS grew by ${growth} MB, over ${max_growth_mb} MB" >&2
    status=1
fi
if [ -n "$max_streams" ] && [ "$accepted" != "?" ] && [ "$accepted" -gt "$max_streams" ]; then
    echo "stalled-streams: ${accepted} streams accepted, over --max-streams ${max_streams}" >&2
    status=1
fi
exit $status
