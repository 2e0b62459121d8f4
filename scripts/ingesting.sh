# Sourced by load.sh and cpu-split.sh: builds the release binary, starts `scores simulate --rate
# max --ids --students $students` on $sim_port and `scores serve --fsync always` on $port fed by
# it, and waits until the service has published events. Defines $base, $data (a temporary
# directory, removed on exit with both processes), $serve_pid, $sim_pid and `seq_now`.

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release --locked -p scores-cli >&2
data=$(mktemp -d)
cleanup() { kill "${serve_pid:-}" "${sim_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

./target/release/scores simulate --rate max --ids --students "$students" --listen "127.0.0.1:$sim_port" \
    2>"$data/simulate.log" &
sim_pid=$!
# The access log (a line per request) is left out, as in the figures before it existed: under
# wrk it cost a quarter to a third of /healthz's rate (docs/PERFORMANCE.md).
RUST_LOG=${RUST_LOG:-info,scores_http::access=warn} ./target/release/scores serve --upstream "http://127.0.0.1:$sim_port/scores" --listen "127.0.0.1:$port" \
    --data-dir "$data/scores" --fsync always 2>"$data/serve.log" &
serve_pid=$!
base="http://127.0.0.1:$port"

# The published snapshot's sequence number; 0 until the service answers.
seq_now() { curl -sf "$base/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])' 2>/dev/null || echo 0; }
for _ in $(seq 100); do [ "$(seq_now)" != 0 ] && break; sleep 0.1; done
