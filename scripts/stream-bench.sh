#!/usr/bin/env bash
# The re-broadcast's pace: `GET /scores` from the first event, read by curl, while `scores serve`
# ingests from `scores simulate --rate max`, then again once the simulator has stopped (a replay
# of the journal alone). What another instance using this one as its upstream could read.
# Everything runs on 127.0.0.1 and stops by itself.
#
#   bash scripts/stream-bench.sh                 # 200 students, 10 s per measurement
#
# Needs curl, python3 and wrk (which the shared setup, scripts/ingesting.sh, checks for).
set -euo pipefail
cd "$(dirname "$0")/.."

students=${STUDENTS:-200}
seconds=${SECONDS_PER_RUN:-10}
sim_port=${SIM_PORT:-18221}
port=${PORT:-18220}

source scripts/ingesting.sh
sleep 3

# Events streamed in $seconds from the first one.
streamed() { timeout "$seconds" curl -sN "$base/scores?after=0" | grep -c '^id:' || true; }

start_seq=$(seq_now)
n=$(streamed)
end_seq=$(seq_now)
echo "| GET /scores from the first event, while ingesting | $((n / seconds)) events/s streamed (ingest meanwhile $(((end_seq - start_seq) / seconds)) events/s) |"
kill "$sim_pid"
wait "$sim_pid" 2>/dev/null || true
sleep 1
# The whole journal, timed until its last event arrives.
journal=$(seq_now)
start=$(date +%s.%N)
timeout 120 curl -sN "$base/scores?after=0" | grep -q -m1 "^id: $journal\$" || true
end=$(date +%s.%N)
echo "| GET /scores from the first event to the last, ingest stopped ($journal events) | $(python3 -c "print(round($journal / ($end - $start)))") events/s streamed |"
