#!/usr/bin/env bash
# Restart time of one `scores` binary on an existing data directory: starts `serve` on it (an
# upstream on a closed port, so nothing new arrives), polls /readyz every 20 ms until 200, and
# prints wall time, CPU-seconds, RSS and the restore's own log. Run two binaries alternately on
# copies of the same directory to compare them in one run.
#
#   bash scripts/restart-ab.sh OLD_BIN DATA_DIR; bash scripts/restart-ab.sh NEW_BIN DATA_DIR
set -euo pipefail
[ $# = 2 ] || { echo "usage: restart-ab.sh SCORES_BIN DATA_DIR" >&2; exit 2; }
bin=$1 data=$2 port=${PORT:-18450}
log=$(mktemp)
started=$(date +%s.%N)
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --upstream http://127.0.0.1:1/none 2>"$log" &
pid=$!
trap 'kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$port/readyz")" = 200 ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.02
done
ended=$(date +%s.%N)
cpu=$(awk '{ rest = substr($0, index($0, ")") + 2); split(rest, f, " "); printf "%.2f", (f[12] + f[13]) / 100 }' "/proc/$pid/stat")
rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
steps=$(grep -E 'checkpoint loaded|tail after the checkpoint folded|projections restored' "$log" |
    sed -E 's/.*(elapsed=[0-9.]+[a-zµ]+).*/\1/' | paste -sd' ')
echo "$bin on $data: $(python3 -c "print(f'{$ended - $started:.2f}')") s wall, $cpu CPU-s, RSS $rss MB; restore log: $steps"
