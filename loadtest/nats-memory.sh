#!/usr/bin/env bash
# NATS memory per stored update (each update has a subject of its own, for the id lookup) and
# the latency of a resume with Last-Event-ID (request to response headers: the lookup on the
# stream leader, then registration). Needs target/release/{quicksilver,loadtest}, HAProxy, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
export QUICKSILVER_BIN=$PWD/target/release/quicksilver MERCURE_JWT_KEY=$(openssl rand -hex 32) MERCURE_DRAIN_TIMEOUT=1s
dir="${TMPDIR:-/tmp}/quicksilver-nats-memory"; port=19700
deploy/cluster down --dir $dir >/dev/null 2>&1 || true
deploy/cluster up --nodes 1 --port $port --dir $dir >/dev/null
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
tok() { local h p s; h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url); p=$(printf '%s' "$1" | b64url); s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$MERCURE_JWT_KEY" -binary | b64url); printf '%s.%s.%s' "$h" "$p" "$s"; }
PUB=$(tok '{"mercure":{"publish":["*"]}}'); SUB=$(tok '{"mercure":{"subscribe":["*"]}}')
hub=http://127.0.0.1:$((port+1))/.well-known/mercure
curl -s -H "Authorization: Bearer $PUB" -d topic=t -d id=first-probe -d data=x $hub >/dev/null
rss() { for n in 1 2 3; do awk '/VmRSS/{print $2}' /proc/$(cat $dir/nats-$n.pid)/status; done | paste -sd+ | bc; }
sleep 2; before=$(rss)
target/release/loadtest --key $MERCURE_JWT_KEY --hub $hub publish --publishers 8 --requests 50000 | grep -E "req/s|publish latency"
sleep 5; after=$(rss)
echo "NATS RSS (3 servers, KiB): before $before after $after; per update per server: $(( (after-before)*1024/50000/3 )) bytes"
# lookups: 100 resumes with Last-Event-ID of the first update, headers only (time to the response)
for _ in $(seq 100); do
  curl -s -o /dev/null -m 0.5 -w '%{time_starttransfer}\n' -H "Authorization: Bearer $SUB" -H "Last-Event-ID: first-probe" "$hub?topic=none" || true
done | sort -n > "$dir-lookups.txt"
echo "lookup (resume to response headers) p50 $(sed -n 50p "$dir-lookups.txt") s, p99 $(sed -n 99p "$dir-lookups.txt") s"
deploy/cluster down --dir $dir >/dev/null
