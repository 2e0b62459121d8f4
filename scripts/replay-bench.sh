#!/usr/bin/env bash
# Replay benchmark: writes a 10M-event log with `scores simulate --rate max` (timing the
# simulator's output rate on the way), then times `scores replay` over it: the summary (a full
# fold) and one query. Everything runs on 127.0.0.1 and stops by itself.
#
#   bash scripts/replay-bench.sh                     # 10M events, the simulator's 200 students
#   STUDENTS=100000 EXAMS=10000 bash scripts/replay-bench.sh
#
# Needs curl. The log (about 100 bytes per event) goes to a temporary directory, removed after.
set -euo pipefail
cd "$(dirname "$0")/.."

events=${EVENTS:-10000000}
students=${STUDENTS:-200}
exams=${EXAMS:-1000}
port=${SIM_PORT:-18301}

cargo build --release --locked -p scores-cli >&2
dir=$(mktemp -d)
cleanup() { kill "${sim_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

./target/release/scores simulate --rate max --ids --count "$events" --students "$students" \
    --exams "$exams" --listen "127.0.0.1:$port" 2>"$dir/simulate.log" &
sim_pid=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
done

start=$(date +%s.%N)
curl -sN "http://127.0.0.1:$port/scores" -o "$dir/log.sse"
end=$(date +%s.%N)
python3 -c "import sys; n,s,e,b=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]); \
print(f'simulate --rate max: {n/(e-s)/1e6:.2f} M events/s ({b/(e-s)/1e6:.0f} MB/s) into curl')" \
    "$events" "$start" "$end" "$(stat -c %s "$dir/log.sse")"

timed() {
    local label=$1; shift
    local start end
    start=$(date +%s.%N)
    "$@" >"$dir/out.json"
    end=$(date +%s.%N)
    python3 -c "import sys; n,s,e=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); \
print(f'{sys.argv[4]}: {e-s:.2f} s, {n/(e-s)/1e6:.2f} M events/s')" "$events" "$start" "$end" "$label"
}
for run in 1 2 3; do
    timed "replay (summary), run $run" ./target/release/scores replay "$dir/log.sse"
done
head -c 300 "$dir/out.json"; echo
timed "replay students" ./target/release/scores replay "$dir/log.sse" students
timed "replay from stdin" sh -c "./target/release/scores replay - < '$dir/log.sse'"
