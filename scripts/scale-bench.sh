#!/usr/bin/env bash
# Scale benchmark (issue 21): a 10M-event journal from `scores simulate --rate max` with 100k
# students and 10k exams in the simulator's order, ingested by `scores serve --fsync always`;
# then restart after kill -9 (a large tail past the last checkpoint to fold), restart after a
# clean stop (the checkpoint at the head), and `scores replay` of the journal. Wall time beside
# CPU-seconds (from /proc/PID/stat, or /usr/bin/time for replay), and RSS per event. Everything
# runs on 127.0.0.1 and stops by itself.
#
#   bash scripts/scale-bench.sh                          # 10M events, 100k students, 10k exams
#   EVENTS=3000000 STUDENTS=200 EXAMS=1000 bash scripts/scale-bench.sh   # the simulator's defaults
#
# The checkpoint is written every CHECKPOINT_EVERY events (default 6M), so the kill -9 at the end
# leaves a tail of EVENTS - 6M to fold. Needs curl, python3 and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."

events=${EVENTS:-10000000}
students=${STUDENTS:-100000}
exams=${EXAMS:-10000}
checkpoint_every=${CHECKPOINT_EVERY:-6000000}
sim_port=${SIM_PORT:-18401}
port=${PORT:-18400}
[ -x /usr/bin/time ] || { echo "scale-bench.sh: GNU time is missing: apt-get install time" >&2; exit 2; }

cargo build --release --locked -p scores-cli >&2
bin=${CARGO_TARGET_DIR:-target}/release/scores
dir=$(mktemp -d)
cleanup() { kill -9 "${serve_pid:-}" "${sim_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
base="http://127.0.0.1:$port"

seq_now() { curl -sf "$base/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])' 2>/dev/null || echo 0; }
cpu_seconds() { awk '{ rest = substr($0, index($0, ")") + 2); split(rest, f, " "); printf "%.2f", (f[12] + f[13]) / 100 }' "/proc/$1/stat"; }
# User and system CPU apart: on a VM, first touches of fresh memory show up as system time
# that varies several-fold from one run to the next.
cpu_split() { awk '{ rest = substr($0, index($0, ")") + 2); split(rest, f, " "); printf "%.2f user + %.2f sys", f[12] / 100, f[13] / 100 }' "/proc/$1/stat"; }
rss_mb() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
per_event() { python3 -c "import sys; print(f'{float(sys.argv[1]) * 1048576 / int(sys.argv[2]):.0f}')" "$1" "$2"; }
now() { date +%s.%N; }
since() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$1"; }

serve() {
    "$bin" serve --upstream "http://127.0.0.1:$sim_port/scores" --listen "127.0.0.1:$port" \
        --data-dir "$dir/data" --fsync always --checkpoint-every "$checkpoint_every" \
        2>>"$dir/serve.log" &
    serve_pid=$!
}

# Restarts the service on the journal (the upstream gone: nothing new arrives) and reports the
# time and CPU to the first 200 on /readyz, and the RSS then.
restart() {
    local label=$1 started
    started=$(now)
    serve
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; do sleep 0.02; done
    local wall cpu rss steps
    wall=$(since "$started"); cpu=$(cpu_split "$serve_pid"); rss=$(rss_mb "$serve_pid")
    # The restore's own account: the checkpoint's load, the tail's fold, the first snapshot.
    steps=$(grep -E 'checkpoint loaded|tail after the checkpoint folded|projections restored' "$dir/serve.log" | tail -3 |
        sed -E 's/.*(elapsed=[0-9.]+[a-zµ]+).*/\1/' | paste -sd' ')
    : >"$dir/serve.log"
    echo "| restart, $label, to /readyz 200 | $wall s wall, $cpu CPU-s | RSS $rss MB ($(per_event "$rss" "$events") B/event), seq $(seq_now); restore log: $steps |"
}

"$bin" simulate --rate max --ids --count "$events" --students "$students" --exams "$exams" \
    --listen "127.0.0.1:$sim_port" 2>"$dir/simulate.log" &
sim_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$sim_port/" && break; sleep 0.1; done

echo "workload: $events events, simulate --rate max --students $students --exams $exams; checkpoint every $checkpoint_every"
echo
echo "| what | time | memory and more |"
echo "| --- | --- | --- |"
started=$(now)
serve
until [ "$(seq_now)" -ge "$events" ]; do sleep 0.2; done
wall=$(since "$started"); cpu=$(cpu_seconds "$serve_pid"); rss=$(rss_mb "$serve_pid"); hwm=$(hwm_mb "$serve_pid")
echo "| ingest, durable and visible, from start | $(python3 -c "print(f'{$events / $wall / 1e6:.2f}')") M events/s ($wall s wall, $cpu CPU-s: $(python3 -c "print(f'{$cpu * 1e6 / $events:.2f}')") CPU-s per M events) | RSS $rss MB at the end ($(per_event "$rss" "$events") B/event), peak $hwm MB |"
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=""

kill -9 "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
restart "after kill -9 (the tail past the last checkpoint folded)"
kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
restart "after a clean stop (the checkpoint at the head)"
kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=""

for run in 1 2; do
    /usr/bin/time -f '%e %U %S %M' -o "$dir/time" "$bin" replay "$dir/data/journal" >/dev/null 2>"$dir/replay.log"
    read -r wall user sys max_kb <"$dir/time"
    echo "| \`scores replay DATA_DIR/journal\`, run $run | $wall s wall, $user user-s + $sys sys-s ($(python3 -c "print(f'{$events / $wall / 1e6:.2f}')") M events/s) | max RSS $((max_kb / 1024)) MB |"
done
