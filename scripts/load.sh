#!/usr/bin/env bash
# Load benchmark: end-to-end ingest from `scores simulate --rate max` into `scores serve`
# (durable and visible), then requests/s and p99 latency per endpoint under 64 connections while
# ingest goes on, and the same for a bare axum server answering the /healthz and /students/{id}
# bodies as constants (the floor for their ratio). Everything runs on 127.0.0.1 and stops by
# itself.
#
#   bash scripts/load.sh                 # 100k students, 10 s per phase
#   STUDENTS=1000 SECONDS_PER_RUN=5 bash scripts/load.sh
#
# Needs wrk (Debian: apt-get install wrk), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

students=${STUDENTS:-100000}
seconds=${SECONDS_PER_RUN:-10}
connections=${CONNECTIONS:-64}
sim_port=${SIM_PORT:-18201}
port=${PORT:-18200}
floor_port=${FLOOR_PORT:-18202}

# Built before ingest starts: a build during it would let the board grow for as long as the
# build takes, and the figures would be of a larger board than the next run's.
cargo build --release --locked -p scores-http --example constant_bodies >&2
source scripts/ingesting.sh

# Ingest: events made durable and visible per second, measured from the published snapshot.
sleep 2
start_seq=$(seq_now); start=$(date +%s.%N)
sleep "$seconds"
end_seq=$(seq_now); end=$(date +%s.%N)
ingest=$(python3 -c "print(f'{($end_seq - $start_seq) / ($end - $start) / 1e6:.2f}')")
echo "| ingest, simulate --rate max -> serve --fsync always, $students students | $ingest M events/s durable and visible (seq $start_seq -> $end_seq in ${seconds} s) |"

student=$(curl -sf "$base/students?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["students"][0])')
exam=$(curl -sf "$base/exams?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["exams"][0])')
# Up to 1,000 ids, percent-encoded, for requests that each ask for a student drawn at random.
curl -sf "$base/students?limit=1000" | python3 -c '
import json, sys, urllib.parse
ids = [urllib.parse.quote(i, safe="") for i in json.load(sys.stdin)["students"]]
print("local ids = {" + ",".join(json.dumps(i) for i in ids) + "}")
print("request = function() return wrk.format(\"GET\", \"/students/\" .. ids[math.random(#ids)]) end")
' >"$data/random-student.lua"
n_students=$(curl -sf "$base/students?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')

# One request at a time: the latency of a request, without queueing behind 63 others. `{i}` in
# the path becomes 1000001, 1000002, ...: a different query each time, so that no answer comes
# from the bodies kept for the current snapshot (a limit above the total lists everyone).
single() {
    local path=$1
    for i in $(seq 20); do
        curl -s -o /dev/null -w '%{time_total}\n' "$base${path//\{i\}/$((1000000 + i))}"
    done |
        sort -n | awk '{ t[NR] = $1 } END { printf "median %.1f ms, max %.1f ms", t[int((NR + 1) / 2)] * 1000, t[NR] * 1000 }'
}

run() {
    local name=$1 path=$2
    shift 2
    local out
    out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency "$@" "$base$path")
    local rps p50 p99
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    echo "| $name | $rps req/s | p50 $p50 | p99 $p99 |"
    last_rps=$rps
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
requests_start_seq=$(seq_now); requests_start=$(date +%s.%N)
echo "| endpoint ($connections connections, ${seconds} s, while ingesting) | throughput | p50 | p99 |"
echo "| --- | --- | --- | --- |"
run "GET /healthz" /healthz
healthz=$last_rps
run "GET /students/{id}" "/students/$student"
student_rps=$last_rps
run "GET /students/{id}, Accept-Encoding: gzip" "/students/$student" -H "Accept-Encoding: gzip"
student_gzip_rps=$last_rps
run "GET /students/{id}, one of up to 1,000 at random" / -s "$data/random-student.lua"
run "GET /exams/{number}" "/exams/$exam"
run "GET /exams" /exams
run "GET /students ($n_students students)" /students
requests_end_seq=$(seq_now); requests_end=$(date +%s.%N)

# The floor: a bare axum server answering the same two bodies as constants, on the same cores and
# under the same ingest. Its ratio is the best any service answering these bytes could reach here.
curl -sf "$base/healthz" >"$data/healthz.json"
curl -sf "$base/students/$student" >"$data/student.json"
./target/release/examples/constant_bodies "127.0.0.1:$floor_port" "$data/healthz.json" "$data/student.json" &
floor_pid=$!
trap 'kill "$floor_pid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$floor_port/0" && break; sleep 0.1; done
base=http://127.0.0.1:$floor_port run "bare axum, the /healthz body as a constant" /0
floor_small=$last_rps
base=http://127.0.0.1:$floor_port run "bare axum, the /students/{id} body ($(wc -c <"$data/student.json") B) as a constant" /1
floor_large=$last_rps
kill "$floor_pid"
echo
echo "| ingest meanwhile (the wrk runs share the cores with it) | $(python3 -c "print(f'{($requests_end_seq - $requests_start_seq) / ($requests_end - $requests_start) / 1e6:.2f}')") M events/s |"
echo "| GET /students/{id} ÷ GET /healthz | $(ratio "$student_rps" "$healthz"); with gzip $(ratio "$student_gzip_rps" "$healthz") |"
echo "| the same bodies as constants (bare axum), ÷ | $(ratio "$floor_large" "$floor_small") |"
echo "| GET /students ($n_students students), one request at a time, each rendered, while ingesting | $(single '/students?limit={i}') |"
echo "| GET /students ($n_students students), one request at a time, the same query, while ingesting | $(single /students) |"
echo "| GET /students/{id}, one request at a time, while ingesting | $(single "/students/$student") |"
echo
echo "final seq: $(seq_now)"
curl -sf "$base/metrics" | grep -E '^scores_(http_bodies_[a-z]+_total|journal_appends_total|results) ' || true
