#!/usr/bin/env bash
# The cluster figures of loadtest/RESULTS.md: the local cluster of deploy/cluster (three NATS
# servers, hub nodes on `transport = nats`, HAProxy in front), measured with the load tool,
# which follows every process (hubs, NATS servers, HAProxy, itself).
#
# Usage: loadtest/cluster-bench.sh [--port P] [--dir DIR] [--subscribers N] [--updates M]
#
# Runs, one after the other, each on a fresh cluster:
#   1. fan-out through HAProxy to three nodes;
#   2. cross-node delivery: publications on node 1, subscribers spread over nodes 1, 2 and 3
#      (the latency is reported per node);
#   3. fan-out through HAProxy to one node on nats;
#   4. fan-out through HAProxy to one node on the embedded store (the same HAProxy, the nats
#      node replaced by a single node);
#   5. publication latency through HAProxy (three nodes).
# Each run's JSON goes to DIR/<name>.json and its table to stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port=19500 dir="${TMPDIR:-/tmp}/quicksilver-cluster-bench" subscribers=1000 updates=2000
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --subscribers) subscribers="$2"; shift 2 ;;
    --updates) updates="$2"; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

say() { printf '\n==> %s\n' "$*" >&2; }

(cd "$root" && cargo build --release --locked -p quicksilver -p loadtest)
export QUICKSILVER_BIN="$root/target/release/quicksilver"
loadtest="$root/target/release/loadtest"
MERCURE_JWT_KEY="$(openssl rand -hex 32)"
export MERCURE_JWT_KEY
# Short drains keep `down` quick; the hubs inherit it.
export MERCURE_DRAIN_TIMEOUT=1s
hub() { printf 'http://127.0.0.1:%s/.well-known/mercure' "$1"; }
cluster="$dir/cluster"
mkdir -p "$dir"
trap '"$root/deploy/cluster" down --dir "$cluster" >/dev/null 2>&1 || true' EXIT

up() {
  "$root/deploy/cluster" up --nodes "$1" --port "$port" --dir "$cluster" >/dev/null
}
down() {
  "$root/deploy/cluster" down --dir "$cluster" >/dev/null
}
# run NAME LABEL ARGS...: one load-test run following every process of the cluster.
run() {
  local name="$1" label="$2"
  shift 2
  say "$label"
  "$loadtest" --key "$MERCURE_JWT_KEY" --follow-dir "$cluster" --label "$label" \
    --json "$dir/$name.json" "$@"
}
fanout=(fanout --subscribers "$subscribers" --updates "$updates")

up 3
run three-nodes "3 nats nodes (R3) behind HAProxy" --hub "$(hub "$port")" "${fanout[@]}"
run cross-node "publish on node 1, subscribers on nodes 1, 2, 3" \
  --publish-hub "$(hub $((port + 1)))" --subscribe-hub "$(hub $((port + 1)))" \
  --subscribe-hub "$(hub $((port + 2)))" --subscribe-hub "$(hub $((port + 3)))" \
  fanout --subscribers 300 --updates "$updates" --rate 200
run publish-three-nodes "publications through HAProxy, 3 nats nodes (R3)" \
  --hub "$(hub "$port")" publish --publishers 4 --requests 4000
down

up 1
run one-nats-node "1 nats node (R3) behind HAProxy" --hub "$(hub "$port")" "${fanout[@]}"
# The same HAProxy, with an embedded node in place of the nats node, and no NATS.
"$root/deploy/cluster" down --dir "$cluster" >/dev/null
up 1
for file in "$cluster"/hub-1.pid "$cluster"/nats-*.pid; do
  kill "$(cat "$file")" && rm "$file"
done
sleep 2
MERCURE_ADDR="127.0.0.1:$((port + 1))" MERCURE_TRANSPORT=embedded \
  MERCURE_HISTORY_PATH="$dir/embedded.redb" "$QUICKSILVER_BIN" >"$cluster/hub-1.log" 2>&1 &
echo $! >"$cluster/hub-1.pid"
# Ready, and seen so by HAProxy's health check.
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
run one-embedded-node "1 embedded node behind HAProxy" --hub "$(hub "$port")" "${fanout[@]}"
down
rm -f "$dir/embedded.redb"
