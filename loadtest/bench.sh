#!/usr/bin/env bash
# Runs the benchmark scenario set against a hub and appends a Markdown table to
# loadtest/RESULTS.md (machine, date, command, figures). Any hub works: the command is yours.
#
# Usage: loadtest/bench.sh --label NAME --url HUB_URL [--key KEY] [--quick] [--only A,B]
#                          [--tls-ca PEM] [--keep DIR] -- HUB COMMAND...
#
#   loadtest/bench.sh --label quicksilver --url http://127.0.0.1:8090/.well-known/mercure -- \
#     env MERCURE_JWT_KEY=k MERCURE_TRANSPORT=memory MERCURE_ADDR=127.0.0.1:8090 \
#         MERCURE_WORKERS=1 RUST_LOG=warn target/release/quicksilver
#
# The hub is started afresh for every scenario, pinned to CPU 0; the load runs on CPU 1 (taskset),
# so the two do not steal each other's core. The hub must accept HS256 tokens signed with KEY
# (default `k`) and be reachable at HUB_URL. --quick runs smaller sizes (a minute in all);
# --only runs the named scenarios (e.g. fanout-1k,publish). An https:// URL needs --tls-ca, the
# certificate (or its CA) the hub serves. --keep DIR copies each scenario's JSON report and table
# there (they hold more than RESULTS.md: the load tool's own CPU, every percentile).
#
# soak-3m (3 minutes of churn) and overload take longer than the others and bring their own
# --time-limit (an entry's arguments may); both read the hub's /metrics page, and soak reports
# the hub's RSS from the first minute to the end, its open files and tasks in the notes. The soak
# starts the hub with MERCURE_HISTORY_SIZE=1000 (a history that keeps every update grows the RSS
# by design, which would hide what the churn does) and MERCURE_WRITE_TIMEOUT=0s (the hub ends
# every stream within write_timeout, 600 s by default, and the soak's witnesses do not reconnect).
#
# The urlpatterns-* scenarios (Mercure 1.0 match_urlpattern subscriptions, sent without a token)
# start the hub with MERCURE_ANONYMOUS=1 added to its environment; a hub that reads another
# setting for anonymous subscribers refuses them (401). Every other scenario runs the command as
# given.
set -euo pipefail
cd "$(dirname "$0")/.."

label="" url="" key="k" quick=0 only="" tls=() keep=
while [ $# -gt 0 ]; do
  case "$1" in
    --label) label="$2"; shift 2 ;;
    --url) url="$2"; shift 2 ;;
    --key) key="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --only) only=",$2,"; shift 2 ;;
    --tls-ca) tls=(--tls-ca "$2"); shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$label" ] && [ -n "$url" ] && [ $# -gt 0 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d' >&2; exit 2; }
hub_command=("$@")
hostport="${url#*://}"; hostport="${hostport%%/*}"
host="${hostport%:*}"; port="${hostport##*:}"

command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -p loadtest -q
loadtest="${CARGO_TARGET_DIR:-target}/release/loadtest"
out="$(mktemp -d)"
trap 'stop_hub; rm -rf "$out"' EXIT

hub_pid=""
# start_hub [VAR=VALUE...]: the hub command, with these settings added to its environment.
start_hub() {
  if [ $# -gt 0 ]; then
    taskset -c 0 env "$@" "${hub_command[@]}" >"$out/hub.log" 2>&1 &
  else
    taskset -c 0 "${hub_command[@]}" >"$out/hub.log" 2>&1 &
  fi
  hub_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    kill -0 "$hub_pid" 2>/dev/null || { cat "$out/hub.log" >&2; echo "the hub exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "the hub did not listen on $hostport within 10 s" >&2; exit 1
}
stop_hub() {
  [ -n "$hub_pid" ] || return 0
  kill -TERM "$hub_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$hub_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$hub_pid" 2>/dev/null || true
  wait "$hub_pid" 2>/dev/null || true
  hub_pid=""
}

# name | loadtest arguments [| settings added to the hub's environment]
if [ "$quick" = 1 ]; then
  scenarios=(
    "fanout-1k|fanout --subscribers 1000 --updates 300"
    "fanout-1k-200ps|fanout --subscribers 1000 --updates 600 --rate 200"
    "fanout-10k|fanout --subscribers 10000 --updates 50"
    "templates-10k|topics --subscribers 10000 --updates 2000 --templates"
    "urlpatterns-10k|topics --subscribers 10000 --updates 2000 --urlpatterns --anonymous|MERCURE_ANONYMOUS=1"
    "idle-19k|idle --connections 19000 --hold 3s"
    "publish|publish --publishers 8 --requests 10000"
    "reconnect-1k|reconnect --subscribers 1000 --history 500"
    "soak-1m|soak --duration 1m --reference 20s --time-limit 3m|MERCURE_HISTORY_SIZE=1000 MERCURE_WRITE_TIMEOUT=0s"
    "overload|overload --subscribers 100 --duration 10s --baseline 5s --recovery 10s --time-limit 3m"
  )
else
  scenarios=(
    "fanout-1k|fanout --subscribers 1000 --updates 2000"
    "fanout-1k-200ps|fanout --subscribers 1000 --updates 2000 --rate 200"
    "fanout-10k|fanout --subscribers 10000 --updates 200"
    "templates-1k|topics --subscribers 1000 --updates 5000 --templates"
    "templates-10k|topics --subscribers 10000 --updates 5000 --templates"
    "urlpatterns-1k|topics --subscribers 1000 --updates 5000 --urlpatterns --anonymous|MERCURE_ANONYMOUS=1"
    "urlpatterns-10k|topics --subscribers 10000 --updates 5000 --urlpatterns --anonymous|MERCURE_ANONYMOUS=1"
    "idle-19k|idle --connections 19000 --hold 5s"
    "publish|publish --publishers 8 --requests 40000"
    "reconnect-1k|reconnect --subscribers 1000 --history 1000"
    "soak-3m|soak --duration 3m --time-limit 5m|MERCURE_HISTORY_SIZE=1000 MERCURE_WRITE_TIMEOUT=0s"
    "overload|overload --subscribers 100 --duration 30s --time-limit 3m"
  )
fi

for entry in "${scenarios[@]}"; do
  name="${entry%%|*}"; rest="${entry#*|}"; hub_env=()
  if [[ "$rest" == *"|"* ]]; then read -r -a hub_env <<<"${rest#*|}"; rest="${rest%%|*}"; fi
  read -r -a args <<<"$rest"
  if [ -n "$only" ] && [[ "$only" != *",$name,"* ]]; then continue; fi
  printf '==> %s: %s%s\n' "$name" "${args[*]}" "${hub_env[*]:+ (hub with ${hub_env[*]})}" >&2
  [ ${#hub_env[@]} -eq 0 ] || printf '%s\n' "${hub_env[*]}" >"$out/$name.env"
  limit=(--time-limit 120s)
  [[ " ${args[*]} " != *" --time-limit "* ]] || limit=()
  start_hub "${hub_env[@]}"
  taskset -c 1 "$loadtest" --hub "$url" "${tls[@]}" --key "$key" --hub-pid "$hub_pid" --label "$label" \
    "${limit[@]}" "${args[@]}" --json "$out/$name.json" >"$out/$name.txt" || true
  stop_hub
done
if [ -n "$keep" ]; then mkdir -p "$keep" && cp "$out"/*.json "$out"/*.txt "$keep"/ 2>/dev/null || true; fi

python3 - "$out" "$label" "$(printf '%q ' "${hub_command[@]}")" "$quick" >>loadtest/RESULTS.md <<'PY'
import json, os, platform, subprocess, sys, time
out, label, command, quick = sys.argv[1:5]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = round(int(open("/proc/meminfo").readline().split()[1]) / 1048576)
print(f"\n## {label} — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
print(f"Machine: {os.cpu_count()} × {cpu}, {mem} GiB, Linux {platform.release()}. Hub on CPU 0, "
      f"load on CPU 1{' (quick sizes)' if quick == '1' else ''}.  ")
print(f"Hub command: `{command.strip()}`\n")
print("| scenario | delivered | lost / dup | deliveries/s | latency p50 / p99 / max (ms) | publish req/s | hub CPU s | hub RSS | notes |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
def f(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"
for name in sorted(os.listdir(out)):
    if not name.endswith(".json"):
        continue
    d = json.load(open(os.path.join(out, name)))
    r = d["results"]
    hub = next((p for p in d.get("processes", []) if p["name"] == "hub" and not p["ended"]), {})
    lat = r.get("delivery_latency") or r.get("publish_latency") or r.get("reconnect_latency") or {}
    dl = r.get("deliveries") or r.get("replayed") or {}
    delivered = f"{dl['count']:,}/{dl['of']:,}" if dl else "–"
    notes = []
    env = os.path.join(out, name[:-5] + ".env")
    if os.path.exists(env): notes.append(f"hub with {open(env).read().strip()}")
    if d.get("timed_out"): notes.append("STOPPED at time limit")
    if "hub_rss_per_connection_kib" in r:
        notes.append(f"{r['connections_opened']['count']:,} open, {r['hub_rss_per_connection_kib']} KiB/connection")
    if r.get("publish_failures"): notes.append(f"{r['publish_failures']} publish failures")
    if "connect_time" in r and r["connect_time"]:
        notes.append(f"connect p99 {r['connect_time']['p99_ms']} ms")
    if "all_reconnected_and_complete_seconds" in r:
        notes.append(f"all reconnected and caught up in {r['all_reconnected_and_complete_seconds']} s")
    if "hub_rss_ratio" in r:
        def mib(k):
            return "–" if not isinstance(r.get(k), (int, float)) else f"{r[k]/1024:.1f}"
        notes.append(f"RSS at {d['params']['reference_seconds']:g} s {mib('hub_rss_reference_kib')} MiB → end "
                     f"{mib('hub_rss_end_kib')} MiB (×{r['hub_rss_ratio']}, {r['hub_rss_flat']}); "
                     f"fds {r['hub_fds_baseline']} → {r['hub_fds_end']} → {r['hub_fds_after_settle']}; "
                     f"tasks {r['hub_tasks_baseline']} → {r['hub_tasks_end']} → {r['hub_tasks_after_settle']}; "
                     f"{r['sessions_opened']:,} sessions")
        dl = r.get("witness_deliveries") or {}
        delivered = f"{dl['count']:,}/{dl['of']:,}" if dl else "–"
        r["lost"] = r.get("witness_lost")
        r["duplicates"] = r.get("witness_duplicates")
        lat = r.get("delivery_latency") or {}
    if "overload_answered_200" in r:
        recovered = r["recovered_after_seconds"]
        recovered = (f"recovered after {recovered} s" if isinstance(recovered, (int, float))
                     else f"recovery: {recovered}")
        notes.append(f"sustainable {r['sustainable_rate']:,.0f}/s, offered {r['offered_rate']:,.0f}/s: "
                     f"200 {r['overload_answered_200']:,}, 503 {r['overload_answered_503']:,}, "
                     f"429 {r['overload_answered_429']:,}, errors {r['overload_errors']:,}, "
                     f"not sent {r['overload_requests_not_sent']:,}; publish p99 "
                     f"{(r.get('overload_publish_latency') or {}).get('p99_ms', '–')} ms; {recovered}")
        dl = r.get("overload_deliveries") or {}
        delivered = f"{dl['count']:,}/{dl['of']:,}" if dl else "–"
        lat = r.get("overload_delivery_latency") or {}
    if "requests_ok" in r:
        delivered = f"{r['requests_ok']['count']:,}/{r['requests_ok']['of']:,} ok"
    rss = hub.get("rss_after_kib")
    print(f"| {name[:-5]} | {delivered} | {f(r.get('lost'))} / {f(r.get('duplicates'))} | "
          f"{f(r.get('deliveries_per_second'))} | {lat.get('p50_ms', '–')} / {lat.get('p99_ms', '–')} / {lat.get('max_ms', '–')} | "
          f"{f(r.get('publish_requests_per_second') or r.get('requests_per_second'))} | {hub.get('cpu_seconds', '–')} | "
          f"{'–' if rss is None else f'{rss/1024:.0f} MiB'} | {'; '.join(notes)} |")
PY
echo "appended to loadtest/RESULTS.md" >&2
