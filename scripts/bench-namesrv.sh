#!/usr/bin/env bash
# `make bench-namesrv`: kv-server's name server against rocketmq-rust's
# in-memory one (rocketmq-namesrv-rust), both driven by kv-bench over
# RocketMQ's remoting protocol: one of each, then three of each, on loopback.
# Per size, route lookups (GET_ROUTEINFO_BY_TOPIC) per second and their p99,
# then brokers registering their topics (REGISTER_BROKER) with every name
# server, once with their topics new and once unchanged, as the 30 s
# heartbeat sends them: time, server CPU and, for kv-server, raft writes.
# Prints the table and writes it to docs/benchmarks-namesrv.md.
#
# Environment (all optional):
#   BENCH_SECONDS           seconds per lookup cell (default 10)
#   BENCH_LOOKUP_CONNECTIONS  connections of the lookup cells (default 64)
#   BENCH_LOOKUP_TOPICS     topics the lookups are spread over (default 1000)
#   BENCH_BROKERS, BENCH_TOPICS  the registration cell: brokers, and topics
#                           each (default 100 and 1000)
#   BENCH_REGISTER_CONNECTIONS  registrations in flight (default 8)
#   BENCH_OUTPUT            where the table goes (default docs/benchmarks-namesrv.md)
#   BENCH_DIR, CARGO_TARGET_DIR, KV_SERVER_BIN, KV_BENCH_BIN  as for bench-compare.sh
#   ROCKETMQ_NAMESRV_BIN    rocketmq-namesrv-rust, if not the one
#                           scripts/rocketmq-install.sh installs
#
# Time: about 3 minutes once the binaries are built; building
# rocketmq-namesrv-rust the first time takes about 9 minutes on 2 cores.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

seconds=${BENCH_SECONDS:-10}
lookup_connections=${BENCH_LOOKUP_CONNECTIONS:-64}
lookup_topics=${BENCH_LOOKUP_TOPICS:-1000}
brokers=${BENCH_BROKERS:-100}
topics=${BENCH_TOPICS:-1000}
register_connections=${BENCH_REGISTER_CONNECTIONS:-8}
output=${BENCH_OUTPUT:-docs/benchmarks-namesrv.md}
target_dir=${CARGO_TARGET_DIR:-target}
kv_server=${KV_SERVER_BIN:-$target_dir/release/kv-server}
kv_bench=${KV_BENCH_BIN:-$target_dir/release/kv-bench}

script_name=bench-namesrv
work_parent=${BENCH_DIR:-$target_dir}
source "$repo/scripts/lib.sh"
source "$repo/scripts/bench-lib.sh"

for binary in "$kv_server" "$kv_bench"; do
    [[ -x $binary ]] || die "$binary is missing: run 'cargo build --release -p kv-server -p integration-tests --bins' (or make bench-namesrv)"
done
if [[ -n ${ROCKETMQ_NAMESRV_BIN:-} ]]; then
    rocketmq_namesrv=$ROCKETMQ_NAMESRV_BIN
else
    # Where scripts/rocketmq-install.sh puts it (and installs it if missing).
    rocketmq_cache=${ROCKETMQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openmessaging-kv/rocketmq-${ROCKETMQ_VERSION:-1.0.0}}
    rocketmq_namesrv=$rocketmq_cache/bin/rocketmq-namesrv-rust
    [[ -x $rocketmq_namesrv ]] || scripts/rocketmq-install.sh rocketmq-namesrv ||
        die "cannot install rocketmq-namesrv-rust"
fi
[[ -x $rocketmq_namesrv ]] || die "$rocketmq_namesrv is missing"

# start_rocketmq COUNT: COUNT independent rocketmq-namesrv-rust (they share
# nothing, as RocketMQ's name servers do); sets rmq_pids and rmq_namesrvs.
start_rocketmq() {
    local count=$1 i
    rmq_pids=()
    rmq_namesrvs=""
    for ((i = 1; i <= count; i++)); do
        free_port
        mkdir -p "$work/rmq$count-$i"
        start "$work/rmq$count-$i.log" "$rocketmq_namesrv" --rocketmqHome "$work/rmq$count-$i" \
            --listenPort "$port" --bindAddress 127.0.0.1
        rmq_pids+=("$started")
        rmq_namesrvs+="${rmq_namesrvs:+,}127.0.0.1:$port"
        wait_port "$started" "$port" ||
            die "rocketmq-namesrv-rust $i did not listen on $port: $(tail -5 "$work/rmq$count-$i.log")"
    done
}

lookup_rows=()
register_rows=()

# measure LABEL NODES NAMESRVS PIDS [REVISION_URL]: the lookup and the
# registration cells of one server; leaves their summaries in
# lookup_summary and register_summary.
measure() {
    local label=$1 nodes=$2 namesrvs=$3 pids=$4 revision_url=${5:-}
    bench kv http://127.0.0.1:1 "$lookup_connections" route-lookup --namesrv "$namesrvs" \
        --label "$label" --topics "$lookup_topics" --brokers 2
    lookup_summary=$summary
    local revision_args=()
    [[ -n $revision_url ]] && revision_args=(--revision-from "$revision_url")
    bench kv http://127.0.0.1:1 "$register_connections" register --namesrv "$namesrvs" \
        --label "$label" --brokers "$brokers" --topics "$topics" --server-pids "$pids" \
        --request-timeout 60s "${revision_args[@]}"
    register_summary=$summary
}

# lookup_row NODES ROCKETMQ_SUMMARY KV_SUMMARY: the lookups' row, with the
# goal (kv-server at least as fast, p99 no higher).
lookup_row() {
    local nodes=$1 rmq=$2 kv=$3
    local rmq_ops kv_ops rmq_p99 kv_p99 ratio="-" verdict="-"
    rmq_ops=$(field ops_per_sec "$rmq")
    kv_ops=$(field ops_per_sec "$kv")
    rmq_p99=$(field p99_ms "$rmq")
    kv_p99=$(field p99_ms "$kv")
    if [[ -n $rmq_ops && -n $kv_ops ]]; then
        ratio=$(awk -v k="$kv_ops" -v r="$rmq_ops" 'BEGIN { if (r > 0) printf "%.2f×", k / r; else print "-" }')
        verdict=$(awk -v k="$kv_ops" -v r="$rmq_ops" -v kp="$kv_p99" -v rp="$rmq_p99" \
            'BEGIN { print ((r > 0 && k >= r && kp + 0 <= rp + 0) ? "met" : "missed") }')
    fi
    lookup_rows+=("| $nodes | ${rmq_ops:+$(group "$rmq_ops")/s} | ${kv_ops:+$(group "$kv_ops")/s} | $ratio | $(milliseconds "$rmq_p99") | $(milliseconds "$kv_p99") | $verdict |")
}

# register_row NODES LABEL SUMMARY: one server's registration row.
register_row() {
    local nodes=$1 label=$2 line=$3
    [[ -z $line ]] && { register_rows+=("| $nodes | $label | failed | | | | |"); return; }
    local writes_changed writes_unchanged
    writes_changed=$(field changed_revisions "$line")
    writes_unchanged=$(field unchanged_revisions "$line")
    register_rows+=("| $nodes | $label | $(field changed_seconds "$line") s | $(field changed_cpu_seconds "$line") s | $(field unchanged_seconds "$line") s | $(field unchanged_cpu_seconds "$line") s | ${writes_changed:-n/a} / ${writes_unchanged:-n/a} |")
}

started_at=$SECONDS
load_before=$(cut -d' ' -f1 /proc/loadavg)
for nodes in 1 3; do
    say "--- $nodes name server(s) ---"
    start_rocketmq "$nodes"
    measure rocketmq-namesrv-rust "$nodes" "$rmq_namesrvs" "$(IFS=,; echo "${rmq_pids[*]}")"
    rmq_lookup=$lookup_summary
    register_row "$nodes" rocketmq-namesrv-rust "$register_summary"
    stop "${rmq_pids[@]}"

    kv_namesrv=1 start_kv "kv$nodes-" "$nodes" || die "the kv-server nodes did not start"
    measure kv-server "$nodes" "$kv_namesrvs" "$(IFS=,; echo "${kv_pids[*]}")" "${kv_endpoints%%,*}"
    lookup_row "$nodes" "$rmq_lookup" "$lookup_summary"
    register_row "$nodes" kv-server "$register_summary"
    stop "${kv_pids[@]}"
done
elapsed=$((SECONDS - started_at))
load_after=$(cut -d' ' -f1 /proc/loadavg)

lookup_table=$(
    echo "| name servers | rocketmq-namesrv-rust | kv-server | ratio | p99 rocketmq | p99 kv | goal ≥ 1×, p99 ≤ |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${lookup_rows[@]}"
)
register_table=$(
    echo "| name servers | server | new topics: time | CPU | unchanged: time | CPU | records written (new / unchanged) |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${register_rows[@]}"
)
cores=$(nproc)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cat >"$output" <<EOF
# Name-server benchmark: kv-server against rocketmq-namesrv-rust

Written by \`make bench-namesrv\` (\`scripts/bench-namesrv.sh\`); each run
overwrites this page.

* **Date:** $(date -u '+%Y-%m-%d %H:%M UTC')
* **Machine:** $cores cores ($cpu)
* **Versions:** kv-server $("$kv_server" --version | awk '{print $2}') $(git rev-parse --short HEAD 2>/dev/null || true);
  rocketmq-namesrv-rust ${ROCKETMQ_VERSION:-1.0.0} (crates.io, \`cargo install --locked\`)
* **Command:** \`BENCH_SECONDS=$seconds BENCH_LOOKUP_CONNECTIONS=$lookup_connections BENCH_BROKERS=$brokers BENCH_TOPICS=$topics make bench-namesrv\`
* **Run time:** $((elapsed / 60)) min $((elapsed % 60)) s; load average $load_before before, $load_after after

## Route lookups

$lookup_connections connections, each with one GET_ROUTEINFO_BY_TOPIC in flight,
for $seconds s, on random topics of $(group "$lookup_topics") held by two brokers
(registered first). With three name servers the connections are spread over
all three; kv-server's followers answer from their own view.

$lookup_table

## Registrations

$brokers brokers with $(group "$topics") topics each register with every name
server (as a broker does), $register_connections at a time: first with topics the
server has not seen, then again with nothing changed (the 30 s heartbeat).
CPU is the user and system time of all the name servers over the round
(\`/proc/<pid>/stat\`). kv-server's records written are its store revision's
growth (\`/v1/cluster\`), one per key: a registration that changed nothing
must write none.

$register_table
EOF
cat "$output"
say "the tables are in $output (the run took $((elapsed / 60)) min $((elapsed % 60)) s)"
