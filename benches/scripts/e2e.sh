#!/usr/bin/env bash
# End-to-end TS-1 benchmark: a release `strata` on local disk, fed and queried
# by `ts1-load` on the same machine. Prints, per run: ingest rate, server CPU
# per million spans (including the final flush), peak RSS, at-rest bytes per
# span, and trace-by-ID latency from live data and, after a restart, from
# blocks. Usage: benches/scripts/e2e.sh [runs] [spans]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-5}"
SPANS="${2:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
cargo build --release -q -p strata -p strata-benches --bins
BIN="$CARGO_TARGET_DIR/release"
TICKS="$(getconf CLK_TCK)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start() {
  "$BIN/strata" --storage "$1/data" --wal-dir "$1/wal" --http-addr 127.0.0.1:3200 \
    --otlp-grpc-addr 127.0.0.1:4317 --otlp-http-addr 127.0.0.1:4318 --zipkin-addr 127.0.0.1:9411 \
    >"$1/out.log" 2>>"$1/err.log" &
  echo $!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:3200/ready >/dev/null && return; sleep 0.1; done
}

stop() {
  kill -TERM "$1"
  while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
}

for run in $(seq 1 "$RUNS"); do
  dir="$(mktemp -d)"
  pid="$(start "$dir")"
  before="$(cpu_ticks "$pid")"
  "$BIN/ts1-load" --spans "$SPANS" --queries 0 --save-ids "$dir/ids.txt" | sed "s/^/run $run        /"
  ingested="$(cpu_ticks "$pid")"
  # Lookups while the newest spans are still in memory.
  "$BIN/ts1-load" --ids "$dir/ids.txt" --queries 1000 | sed "s/^/run $run recent /"
  queried="$(cpu_ticks "$pid")"
  peak="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
  # Count CPU until the process exits, so the final flush is included.
  last="$queried"
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do last="$(cpu_ticks "$pid" 2>/dev/null || echo "$last")"; sleep 0.05; done
  ingest_ticks=$(( ingested - before + last - queried ))
  python3 - "$dir" "$SPANS" "$ingest_ticks" "$TICKS" "$peak" "$run" <<'PY'
import glob, json, sys
d, spans, ticks, hz, peak, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
metas = [json.load(open(m)) for m in glob.glob(f"{d}/data/*/*/meta.json")]
n = sum(m["span_count"] for m in metas)
data = sum(m["data_size_bytes"] for m in metas)
bloom = sum(m["bloom_size_bytes"] for m in metas)
print(f"run {run} server {ticks / hz / (n / 1e6):.1f} CPU-s per million spans (ingest + flush), "
      f"peak RSS {peak / 1024:.0f} MiB, {len(metas)} blocks, at rest {data / n:.1f} B/span + bloom {bloom / n:.2f} B/span")
PY
  pid="$(start "$dir")"
  "$BIN/ts1-load" --ids "$dir/ids.txt" --queries 1000 | sed "s/^/run $run blocks /"
  stop "$pid"
  rm -rf "$dir"
done
