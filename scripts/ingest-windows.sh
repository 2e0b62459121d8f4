#!/usr/bin/env bash
# Ingest alone, from `scores simulate --rate max` into `scores serve --fsync always`, in three
# consecutive 8 s windows starting 2 s after launch: events made durable and visible per
# second in each (the board grows from one window to the next), then journal appends and
# snapshots published per second over the last window. For comparing two builds on a noisy
# machine, run them in turn, more than once. With WRK=1, wrk asks for the first student
# (`-t2 -c64`) throughout the last window, and its rate is printed too; with RENDERED=1, twenty
# `GET /students?limit=…` requests follow, one at a time, each a different query (so each is
# rendered), and their median and maximum time.
#
#   bash scripts/ingest-windows.sh                          # this tree's release build, 200 students
#   STUDENTS=100000 RENDERED=1 bash scripts/ingest-windows.sh /tmp/scores-before
#
# Needs curl, python3 and, with WRK=1, wrk. Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

students=${STUDENTS:-200}
sim_port=${SIM_PORT:-18241}
port=${PORT:-18240}
binary=${1:-}
if [ -z "$binary" ]; then
    cargo build --release --locked -p scores-cli >&2
    binary=./target/release/scores
fi
data=$(mktemp -d)
cleanup() { kill "${serve_pid:-}" "${sim_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

"$binary" simulate --rate max --ids --students "$students" --listen "127.0.0.1:$sim_port" 2>/dev/null &
sim_pid=$!
"$binary" serve --upstream "http://127.0.0.1:$sim_port/scores" --listen "127.0.0.1:$port" \
    --data-dir "$data/scores" --fsync always 2>/dev/null &
serve_pid=$!

metric() { curl -sf "127.0.0.1:$port/metrics" | awk -v name="$1" '$1 == name {print $2}'; }
seq_now() { metric scores_snapshot_seq || echo 0; }
rate() { python3 -c "print(f'{($2 - $1) / ($4 - $3):.0f}')"; }

sleep 2
seq0=$(seq_now); t0=$(date +%s.%N)
windows=()
for window in 1 2 3; do
    appends0=$(metric scores_journal_appends_total); published0=$(metric scores_snapshots_published_total)
    if [ "$window" = 3 ] && [ "${WRK:-}" = 1 ]; then
        student=$(curl -sf "127.0.0.1:$port/students?limit=1" |
            python3 -c 'import json, sys, urllib.parse; print(urllib.parse.quote(json.load(sys.stdin)["students"][0], safe=""))')
        wrk_rate=$(wrk -t2 -c64 -d8s "http://127.0.0.1:$port/students/$student" | awk '/^Requests\/sec/ {print $2}')
    else
        sleep 8
    fi
    seq1=$(seq_now); t1=$(date +%s.%N)
    windows+=("$(python3 -c "print(f'{($seq1 - $seq0) / ($t1 - $t0) / 1e6:.2f}')")")
    appends=$(rate "$appends0" "$(metric scores_journal_appends_total)" "$t0" "$t1")
    published=$(rate "$published0" "$(metric scores_snapshots_published_total)" "$t0" "$t1")
    seq0=$seq1; t0=$t1
done
echo -n "$binary, $students students: ${windows[*]} M events/s; last window: $appends appends/s, $published snapshots/s"
[ -n "${wrk_rate:-}" ] && echo -n ", wrk $wrk_rate req/s"
if [ "${RENDERED:-}" = 1 ]; then
    for i in $(seq 20); do
        curl -s -o /dev/null -w '%{time_total}\n' "127.0.0.1:$port/students?limit=$((1000000 + i))"
    done | sort -n | awk '{ t[NR] = $1 } END { printf "; /students each rendered: median %.1f ms, max %.1f ms", t[int((NR + 1) / 2)] * 1000, t[NR] * 1000 }'
fi
echo " (seq $seq1)"
