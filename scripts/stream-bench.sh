#!/usr/bin/env bash
# The re-broadcast's pace: `GET /scores` from the first event, read by curl, while `scores serve`
# ingests from `scores simulate --rate max`, then again once the simulator has stopped (a replay
# of the journal alone). What another instance using this one as its upstream could read.
# Everything runs on 127.0.0.1 and stops by itself.
#
#   bash scripts/stream-bench.sh                 # 200 students, 10 s per measurement
#
# Needs curl, python3 and wrk (which the shared setup, scripts/ingesting.sh, checks for). The
# stream is read by python from a socket: curl piped into grep paced it differently.
set -euo pipefail
cd "$(dirname "$0")/.."

students=${STUDENTS:-200}
seconds=${SECONDS_PER_RUN:-10}
sim_port=${SIM_PORT:-18221}
port=${PORT:-18220}

source scripts/ingesting.sh
sleep 3

# `GET /scores` from the first event, read from a socket: with a number of seconds, the events
# read in that time; with `--to SEQ`, the seconds until event SEQ arrived.
read_stream() {
    python3 - "$port" "$@" <<'PY'
import socket, sys, time
port, mode, value = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(b"GET /scores?after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
start, n_events, tail = time.time(), 0, b""
target = f"\nid: {value}\n".encode()
while True:
    data = sock.recv(1 << 20)
    if not data:
        sys.exit("the stream ended")
    n_events += data.count(b"\nid: ")
    if mode == "--for" and time.time() - start >= float(value):
        print(round(n_events / (time.time() - start)))
        break
    if mode == "--to" and target in tail + data:
        print(f"{time.time() - start:.2f}")
        break
    tail = data[-64:]
PY
}

start_seq=$(seq_now); start=$(date +%s.%N)
rate=$(read_stream --for "$seconds")
end_seq=$(seq_now); end=$(date +%s.%N)
ingest=$(python3 -c "print(round(($end_seq - $start_seq) / ($end - $start)))")
echo "| GET /scores from the first event, while ingesting | $rate events/s streamed (ingest meanwhile $ingest events/s) |"
kill "$sim_pid"
wait "$sim_pid" 2>/dev/null || true
sleep 1
journal=$(seq_now)
took=$(read_stream --to "$journal")
echo "| GET /scores from the first event to the last, ingest stopped ($journal events) | $(python3 -c "print(round($journal / $took))") events/s streamed ($took s) |"
