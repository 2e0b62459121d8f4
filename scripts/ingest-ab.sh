#!/usr/bin/env bash
# Durable ingest of one or more `scores` binaries, alternated: each round runs every binary in
# turn on a fresh data directory, fed by `simulate --rate max` (the first binary's simulator,
# so every binary gets the same feed), until EVENTS events are visible on /readyz. Prints the
# rate, the service's CPU-seconds, the RSS at the end, and each busy thread's CPU-seconds and
# time spent runnable but waiting for a core (from /proc/PID/task/*/schedstat): on a 2-core
# machine the feed, the fold and the publisher compete, and the waits say how much.
#
#   bash scripts/ingest-ab.sh OLD_BIN NEW_BIN                    # 3 rounds, 10M events, 100k × 10k
#   ROUNDS=2 STUDENTS=200 EXAMS=1000 bash scripts/ingest-ab.sh OLD_BIN NEW_BIN   # the simulator's defaults
set -euo pipefail
(($# >= 1)) || { echo "usage: ingest-ab.sh SCORES_BIN [SCORES_BIN …]" >&2; exit 2; }
events=${EVENTS:-10000000} students=${STUDENTS:-100000} exams=${EXAMS:-10000}
rounds=${ROUNDS:-3} port=${PORT:-18460} sim_port=${SIM_PORT:-18461}
dir=$(mktemp -d)
cleanup() { kill -9 "${serve_pid:-}" "${sim_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

seq_now() { curl -sf "127.0.0.1:$port/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])' 2>/dev/null || echo 0; }
cpu_of() { awk '{ rest = substr($0, index($0, ")") + 2); split(rest, f, " "); printf "%.2f", (f[12] + f[13]) / 100 }' "$1"; }
threads() {
    for task in "/proc/$1/task/"*; do
        read -r _ waited _ <"$task/schedstat"
        printf '%s %s %.2f\n' "$(cat "$task/comm")" "$(cpu_of "$task/stat")" "$(python3 -c "print($waited / 1e9)")"
    done | awk '$2 >= 0.5 { printf "%s %s CPU-s (waited %s s); ", $1, $2, $3 }'
}

echo "workload: $events events, simulate --rate max --students $students --exams $exams, serve --fsync always"
for round in $(seq "$rounds"); do
    for bin in "$@"; do
        rm -rf "$dir/data"
        "$1" simulate --rate max --ids --count "$events" --students "$students" --exams "$exams" \
            --listen "127.0.0.1:$sim_port" 2>/dev/null &
        sim_pid=$!
        for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$sim_port/" && break; sleep 0.1; done
        started=$(date +%s.%N)
        "$bin" serve --upstream "http://127.0.0.1:$sim_port/scores" --listen "127.0.0.1:$port" \
            --data-dir "$dir/data" --fsync always 2>/dev/null &
        serve_pid=$!
        until [ "$(seq_now)" -ge "$events" ]; do sleep 0.1; done
        ended=$(date +%s.%N)
        rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$serve_pid/status")
        echo "round $round, $bin: $(python3 -c "print(f'{$events / ($ended - $started) / 1e6:.2f}')") M events/s," \
            "$(cpu_of "/proc/$serve_pid/stat") CPU-s, RSS $rss MB ($(python3 -c "print(round($rss * 1048576 / $events))") B/event);" \
            "$(threads "$serve_pid")simulator $(cpu_of "/proc/$sim_pid/stat") CPU-s"
        kill -9 "$serve_pid" "$sim_pid"; wait "$serve_pid" "$sim_pid" 2>/dev/null || true; serve_pid="" sim_pid=""
    done
done
