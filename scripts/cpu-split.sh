#!/usr/bin/env bash
# Where the CPU goes while `scores serve` ingests from `scores simulate --rate max`: first the
# cores each thread of both processes uses during ingest alone, then, for wrk runs against
# /healthz and /students/{id}, the CPU seconds of the service, the simulator and wrk itself,
# and wrk's CPU per request. Everything runs on 127.0.0.1 and stops by itself.
#
#   bash scripts/cpu-split.sh                    # 200 students, 5 s per measurement
#   STUDENTS=100000 SECONDS_PER_RUN=8 bash scripts/cpu-split.sh
#
# Needs wrk (Debian: apt-get install wrk), curl, python3 and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."

students=${STUDENTS:-200}
seconds=${SECONDS_PER_RUN:-5}
sim_port=${SIM_PORT:-18211}
port=${PORT:-18210}

[ -x /usr/bin/time ] || { echo "GNU time is missing: apt-get install time" >&2; exit 2; }
source scripts/ingesting.sh
sleep 3

# Clock ticks (user + system) per thread, as "process/thread-name/tid ticks".
ticks_per_thread() {
    local name pid task
    for name in serve sim; do
        [ "$name" = serve ] && pid=$serve_pid || pid=$sim_pid
        for task in /proc/"$pid"/task/*; do
            echo "$name/$(tr ' ' _ <"$task/comm")/${task##*/} $(awk '{print $14 + $15}' "$task/stat")"
        done
    done | sort
}
cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

echo "ingest alone, $students students, $seconds s:"
start_seq=$(seq_now)
ticks_per_thread >"$data/before"
sleep "$seconds"
ticks_per_thread >"$data/after"
end_seq=$(seq_now)
echo "  $(( (end_seq - start_seq) / seconds )) events/s durable and visible"
join "$data/before" "$data/after" |
    awk -v s="$seconds" -v hz="$hz" '{ c = ($3 - $2) / hz / s; if (c >= 0.01) printf "  %-36s %.2f cores\n", $1, c }'

student=$(curl -sf "$base/students?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["students"][0])')
echo
echo "wrk -t2 -c64 -d${seconds}s while ingesting (CPU seconds over the run):"
for path in /healthz "/students/$student" /healthz "/students/$student"; do
    serve_before=$(cpu_seconds "$serve_pid"); sim_before=$(cpu_seconds "$sim_pid")
    out=$({ /usr/bin/time -f 'wrk-cpu %U %S' wrk -t2 -c64 -d"${seconds}s" "$base$path"; } 2>&1)
    serve_after=$(cpu_seconds "$serve_pid"); sim_after=$(cpu_seconds "$sim_pid")
    python3 - "$path" "$out" "$serve_before" "$serve_after" "$sim_before" "$sim_after" <<'EOF'
import re, sys
path, out, s0, s1, m0, m1 = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
user, system = map(float, re.search(r"wrk-cpu ([\d.]+) ([\d.]+)", out).groups())
seconds = float(re.search(r"requests in ([\d.]+)s", out).group(1))
wrk = user + system
print(f"  {path:<40} {rps:9.0f} req/s  service {s1 - s0:5.2f}  simulator {m1 - m0:4.2f}"
      f"  wrk {wrk:4.2f}  (wrk {wrk / (rps * seconds) * 1e6:4.1f} µs/request)")
EOF
done
