#!/usr/bin/env bash
# `make bench-compare`: etcd 3.4 (through its JSON gateway) against
# kv-server, both driven by the same client (kv-bench) with the same
# durability (every write fsynced before it is acknowledged): one node, then
# three-node clusters on loopback. Each workload runs on both in alternation.
# Prints one table and writes it to docs/benchmarks.md.
#
# Environment (all optional):
#   BENCH_SECONDS           seconds per measured cell (default 10)
#   BENCH_PUT_CONNECTIONS   connection counts of the put cells (default "16 64 256")
#   BENCH_GET_CONNECTIONS   connections of the get and mixed cells (default 64)
#   BENCH_WATCHERS          watchers of the watch cell, on each server (default 100000)
#   BENCH_WATCH_KEYS        keys they watch (default 1000)
#   BENCH_REPLAY_RECORDS    records loaded for replay and rebuild (default 1000000)
#   BENCH_LEASES            leases of the lease keep-alive cell (default 10000)
#   BENCH_OUTPUT            where the table goes (default docs/benchmarks.md)
#   BENCH_DIR               parent of the temporary data directories (default the
#                           target directory: on disk, so fsync costs what it costs)
#   CARGO_TARGET_DIR        where `cargo build --release` put the binaries (default target)
#   KV_SERVER_BIN, KV_BENCH_BIN, ETCD_BIN   the binaries, if elsewhere
#   KV_SERVER_BASELINE_BIN  an earlier kv-server build: its put cells run side by
#                           side with this one's, in the same run (a table of
#                           its own); BENCH_BASELINE_NAME names it (a commit)
#
# Time: with the defaults about 4 minutes per cluster size for the twelve
# closed-loop runs (6 cells x 2 servers x 10 s, plus loading keys and
# starting servers), plus the single-node watch cells (100,000 watchers on etcd, then kv-server: a few minutes) and loading the
# replay records through the API: 1,000,000 puts at 256 connections took 23
# minutes (~730 puts/s) with today's kv-server on a 2-core machine, the whole
# one-node run 26 minutes. BENCH_REPLAY_RECORDS=100000 makes it about 6.
# Last, a plain node and one with TLS and --auth answer the same put and get
# cells (six runs, about 1.5 minutes), for what TLS and tokens cost.
# The HTTP ceiling (the one node's no-op route, --bench-noop-route) adds one
# run per put concurrency; server CPU per operation is read from /proc.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

seconds=${BENCH_SECONDS:-10}
put_connections=${BENCH_PUT_CONNECTIONS:-16 64 256}
get_connections=${BENCH_GET_CONNECTIONS:-64}
watchers=${BENCH_WATCHERS:-100000}
watch_keys=${BENCH_WATCH_KEYS:-1000}
replay_records=${BENCH_REPLAY_RECORDS:-1000000}
leases=${BENCH_LEASES:-10000}
output=${BENCH_OUTPUT:-docs/benchmarks.md}
target_dir=${CARGO_TARGET_DIR:-target}
kv_server=${KV_SERVER_BIN:-$target_dir/release/kv-server}
kv_bench=${KV_BENCH_BIN:-$target_dir/release/kv-bench}
command_line=${BENCH_COMMAND:-scripts/bench-compare.sh}

script_name=bench-compare
work_parent=${BENCH_DIR:-$target_dir}
source "$repo/scripts/lib.sh"
source "$repo/scripts/bench-lib.sh"

for binary in "$kv_server" "$kv_bench"; do
    [[ -x $binary ]] || die "$binary is missing: run 'cargo build --release -p kv-server -p integration-tests --bins' (or make bench-compare)"
done
command -v curl >/dev/null || die "curl is needed to check that servers are up"

# etcd from Debian's etcd-server package (3.4) when it is not installed.
ensure_etcd() {
    if [[ -n ${ETCD_BIN:-} ]]; then
        etcd=$ETCD_BIN
    elif command -v etcd >/dev/null; then
        etcd=$(command -v etcd)
    else
        say "installing etcd (Debian package etcd-server)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q etcd-server >/dev/null ||
            { apt-get update -q >/dev/null && apt-get install -y -q etcd-server >/dev/null; } ||
            die "cannot install etcd-server with apt-get"
        etcd=$(command -v etcd) || die "etcd-server is installed but etcd is not on PATH"
    fi
}
ensure_etcd

# --- the servers -----------------------------------------------------------

# start_etcd NAME COUNT: COUNT etcd members; sets etcd_pids and etcd_endpoints.
start_etcd() {
    local name=$1 count=$2 i cluster="" client_ports=() peer_ports=()
    for ((i = 1; i <= count; i++)); do
        free_port
        client_ports+=("$port")
        free_port
        peer_ports+=("$port")
        cluster+="${cluster:+,}$name$i=http://127.0.0.1:${peer_ports[i - 1]}"
    done
    etcd_pids=()
    etcd_endpoints=""
    for ((i = 1; i <= count; i++)); do
        local client=http://127.0.0.1:${client_ports[i - 1]}
        local peer=http://127.0.0.1:${peer_ports[i - 1]}
        start "$work/$name$i.log" "$etcd" --name "$name$i" --data-dir "$work/$name$i" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "$name-$$" --quota-backend-bytes 8589934592 \
            --logger zap --log-level warn
        etcd_pids+=("$started")
        etcd_endpoints+="${etcd_endpoints:+,}$client"
    done
    for ((i = 1; i <= count; i++)); do
        wait_ready "${etcd_pids[i - 1]}" "http://127.0.0.1:${client_ports[i - 1]}/health" '"health":"true"' ||
            die "etcd $name$i did not become healthy: $(tail -5 "$work/$name$i.log")"
    done
}

# The pids whose CPU time the closed-loop cells measure, comma-separated:
# every member of the etcd cluster and of the kv-server cluster under test.
etcd_cpu_pids=""
kv_cpu_pids=""
# The HTTP ceiling's throughput by connection count (the no-op cells).
declare -A ceiling_ops=()

# compare WORKLOAD NODES CONNECTIONS GOAL ETCD_ENDPOINTS KV_ENDPOINTS
#         KV-BENCH-ARGS...: runs the workload on etcd and on kv-server (the
# first server alternates from cell to cell) and adds a row, with each
# side's server CPU per operation. GOAL is "-" for none, else the
# kv-server/etcd throughput ratio the issue asks for ("3"), followed by
# "+p99" when kv-server's p99 must also be at most etcd's, "+cpu" when its
# CPU per operation must be at most half of etcd's, and "+ceiling" when its
# throughput must be at least half the HTTP ceiling at that concurrency.
compare() {
    local workload=$1 nodes=$2 connections=$3 goal=$4 etcd_endpoints=$5 kv_endpoints=$6
    shift 6
    local etcd_summary kv_summary order
    if (((cell / 2) % 2 == 0)); then order="etcd kv"; else order="kv etcd"; fi
    for target in $order; do
        if [[ $target == etcd ]]; then
            bench etcd "$etcd_endpoints" "$connections" "$@" --server-pids "$etcd_cpu_pids"
            etcd_summary=$summary
        else
            bench kv "$kv_endpoints" "$connections" "$@" --server-pids "$kv_cpu_pids"
            kv_summary=$summary
        fi
    done
    local etcd_ops kv_ops etcd_p99 kv_p99 etcd_errors kv_errors etcd_cpu kv_cpu
    etcd_ops=$(field ops_per_sec "$etcd_summary")
    kv_ops=$(field ops_per_sec "$kv_summary")
    etcd_p99=$(field p99_ms "$etcd_summary")
    kv_p99=$(field p99_ms "$kv_summary")
    etcd_errors=$(field errors "$etcd_summary")
    kv_errors=$(field errors "$kv_summary")
    etcd_cpu=$(field cpu_us_per_op "$etcd_summary")
    kv_cpu=$(field cpu_us_per_op "$kv_summary")
    local etcd_cell="failed" kv_cell="failed" ratio="-" verdict="-" of_ceiling="-"
    local ceiling=${ceiling_ops[$connections]:-}
    [[ -n $etcd_ops ]] && etcd_cell="$(group "$etcd_ops")/s"
    [[ -n $kv_ops ]] && kv_cell="$(group "$kv_ops")/s"
    [[ ${etcd_errors:-0} != 0 ]] && etcd_cell+=" ($(group "$etcd_errors") errors)"
    [[ ${kv_errors:-0} != 0 ]] && kv_cell+=" ($(group "$kv_errors") errors)"
    if [[ $workload == put && -n $kv_ops && -n $ceiling ]]; then
        of_ceiling=$(percent_of "$kv_ops" "$ceiling")
    fi
    if [[ -n $etcd_ops && -n $kv_ops ]]; then
        ratio=$(awk -v k="$kv_ops" -v e="$etcd_ops" 'BEGIN { if (e > 0) printf "%.2f×", k / e; else print "-" }')
        if [[ $goal != - ]]; then
            local with_p99=0 with_cpu=0 with_ceiling=0
            [[ $goal == *+p99* ]] && with_p99=1
            [[ $goal == *+cpu* ]] && with_cpu=1
            [[ $goal == *+ceiling* && -n $ceiling ]] && with_ceiling=1
            verdict=$(awk -v k="$kv_ops" -v e="$etcd_ops" -v g="${goal%%+*}" \
                -v p="$with_p99" -v kp="$kv_p99" -v ep="$etcd_p99" \
                -v c="$with_cpu" -v kc="$kv_cpu" -v ec="$etcd_cpu" \
                -v h="$with_ceiling" -v ceiling="$ceiling" \
                'BEGIN { ok = (e > 0 && k / e >= g && (!p || kp + 0 <= ep + 0) &&
                               (!c || (kc != "" && ec != "" && kc + 0 <= (ec + 0) / 2)) &&
                               (!h || k >= ceiling / 2));
                         printf "≥ %s×%s%s%s: %s", g, (p ? ", p99 ≤ etcd" : ""),
                                (c ? ", CPU ≤ ½ etcd" : ""), (h ? ", ≥ 50% of ceiling" : ""),
                                (ok ? "met" : "missed") }')
        fi
    fi
    row "$workload" "$nodes" "$connections" "$etcd_cell" "$kv_cell" "$ratio" \
        "$(milliseconds "$etcd_p99")" "$(milliseconds "$kv_p99")" \
        "$(microseconds "$etcd_cpu")" "$(microseconds "$kv_cpu")" "$of_ceiling" "$verdict"
}

# ceiling CONNECTIONS KV_ENDPOINTS: the HTTP ceiling, kv-server's stack
# answering the put's request on its no-op route (--bench-noop-route);
# adds a row and remembers the rate for the put cells' "% of ceiling".
ceiling() {
    local connections=$1 kv_endpoints=$2 ops
    bench kv "$kv_endpoints" "$connections" noop --server-pids "$kv_cpu_pids"
    ops=$(field ops_per_sec "$summary")
    if [[ -z $ops || $(field errors "$summary") != 0 ]]; then
        row "HTTP ceiling: the put's request, no-op route" 1 "$connections" "n/a" failed - - - - - - -
        return
    fi
    ceiling_ops[$connections]=$ops
    row "HTTP ceiling: the put's request, no-op route" 1 "$connections" "n/a" "$(group "$ops")/s" - \
        - "$(milliseconds "$(field p99_ms "$summary")")" \
        - "$(microseconds "$(field cpu_us_per_op "$summary")")" "100%" -
}

# closed_loop_cells NODES ETCD_ENDPOINTS KV_ENDPOINTS PUT_GOAL LINEARIZABLE_GOAL
#                   STALE_GOAL: the put cells (on one node each after the
# HTTP ceiling at its concurrency), then gets, mixed and transactions.
closed_loop_cells() {
    local nodes=$1 etcd_endpoints=$2 kv_endpoints=$3 put_goal=$4 linearizable_goal=$5
    local stale_goal=$6 connections
    for connections in $put_connections; do
        ((nodes == 1)) && ceiling "$connections" "$kv_endpoints"
        compare put "$nodes" "$connections" "$put_goal" "$etcd_endpoints" "$kv_endpoints" put
    done
    "$kv_bench" --target etcd --endpoints "$etcd_endpoints" --connections 64 fill >/dev/null ||
        die "could not load the keys into etcd"
    "$kv_bench" --target kv --endpoints "$kv_endpoints" --connections 64 fill >/dev/null ||
        die "could not load the keys into kv-server"
    compare "get linearizable" "$nodes" "$get_connections" "$linearizable_goal" "$etcd_endpoints" "$kv_endpoints" \
        get --consistency linearizable
    compare "get stale (etcd: serializable)" "$nodes" "$get_connections" "$stale_goal" "$etcd_endpoints" "$kv_endpoints" \
        get --consistency stale
    compare "mixed 90% get / 10% put" "$nodes" "$get_connections" - "$etcd_endpoints" "$kv_endpoints" \
        mixed --consistency linearizable
    compare "txn: 1 condition, 3 puts" "$nodes" 64 - "$etcd_endpoints" "$kv_endpoints" txn
}

started_at=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- one node --------------------------------------------------------------

say "one node: starting etcd and kv-server (data under $work)"
start_etcd etcd1n 1
single_etcd_pids=("${etcd_pids[@]}")
single_etcd=$etcd_endpoints
# With the no-op route of the HTTP ceiling, which changes nothing else, and
# room for the watch cell's long-polls (the defaults hold 15,000).
start_kv kv1n 1 --bench-noop-route --max-long-polls "$watchers" \
    --max-concurrent-requests $((watchers + 20000)) || die "kv-server did not start as one node"
single_kv_pid=${kv_pids[0]}
single_kv=$kv_endpoints
single_kv_data=${kv_data_dirs[0]}

etcd_cpu_pids=$(pid_list "${single_etcd_pids[@]}")
kv_cpu_pids=$single_kv_pid
closed_loop_cells 1 "$single_etcd" "$single_kv" 3+p99+cpu+ceiling 5 6

# The same watchers, keys and write rate on both: etcd's on gRPC watch
# streams (one per connection), kv-server's as long-polls over HTTP/2.
# kv-server holds 900 long-polls per connection by default.
watch_connections=$(((watchers + 899) / 900 + 6))
bench etcd "$single_etcd" 1 watch --watchers "$watchers" --watch-keys "$watch_keys" \
    --h2-connections "$watch_connections" --server-pid "${single_etcd_pids[0]}"
etcd_watch=$summary
bench kv "$single_kv" 1 watch --watchers "$watchers" --watch-keys "$watch_keys" \
    --h2-connections "$watch_connections" --server-pid "$single_kv_pid"
# "D of E deliveries; memory +M MB" of a watch summary, or "failed".
watch_cell() {
    if [[ -n $1 ]]; then
        echo "$(group "$(field deliveries "$1")") of $(group "$(field expected_deliveries "$1")") deliveries; memory +$(field rss_growth_mb "$1") MB"
    else
        echo failed
    fi
}
verdict="-"
if [[ -n $summary ]]; then
    p99=$(field p99_ms "$summary")
    growth=$(field rss_growth_mb "$summary")
    verdict=$(awk -v p="$p99" -v m="$growth" -v w="$watchers" \
        'BEGIN { printf "100,000 watchers, p99 ≤ 50 ms, ≤ 400 MB: %s", ((w >= 100000 && p <= 50 && m <= 400) ? "met" : "missed") }')
fi
row "watch: delivery after the write's acknowledgement" 1 \
    "$(group "$watchers") watchers on $(group "$watch_keys") keys" \
    "$(watch_cell "$etcd_watch")" "$(watch_cell "$summary")" - \
    "$(milliseconds "$(field p99_ms "$etcd_watch")")" "$(milliseconds "$(field p99_ms "$summary")")" \
    - - - "$verdict"

bench kv "$single_kv" 64 lease-keepalive --leases "$leases" --server-pid "$single_kv_pid"
if [[ -n $summary ]]; then
    row "lease keep-alive, 1 a second each" 1 "$(group "$leases") leases" \
        "n/a (keep-alives are a gRPC stream)" \
        "$(group "$(field kept "$summary")") kept alive; leader $(field cpu_percent "$summary")% of a core, $(field cpu_us_per_op "$summary") µs CPU each; VmRSS $(field rss_mb "$summary") MB ($(signed "$(field rss_growth_mb "$summary")") MB)" \
        - - "$(milliseconds "$(field p99_ms "$summary")")" - - - -
else
    row "lease keep-alive" 1 "$leases leases" "n/a" failed - - - - - - -
fi

bench kv "$single_kv" 256 replay --records "$replay_records"
# rate_verdict RATE GOAL: "≥ GOAL/s: met" or "missed".
rate_verdict() {
    local met
    met=$(awk -v r="$1" -v g="$2" 'BEGIN { print (r >= g ? "met" : "missed") }')
    echo "≥ $(group "$2")/s: $met"
}
if [[ -n $summary ]]; then
    rate=$(field records_per_sec "$summary")
    row "replay /v1/topic/records from 0" 1 "1 stream, $(group "$(field records "$summary")") records" \
        "n/a" "$(group "$rate") records/s" - - - - - - "$(rate_verdict "$rate" 1000000)"
    load_rate=$(field load_puts_per_sec "$summary")
else
    row "replay /v1/topic/records from 0" 1 1 "n/a" failed - - - - - - -
fi

stop "$single_kv_pid"
bench kv "$single_kv" 1 rebuild --server-bin "$kv_server" --data-dir "$single_kv_data"
if [[ -n $summary ]]; then
    rate=$(field records_per_sec "$summary")
    row "view rebuild (kv-server rebuild)" 1 "offline, $(group "$(field records "$summary")") records" \
        "n/a" "$(group "$rate") records/s" - - - - - - "$(rate_verdict "$rate" 500000)"
else
    row "view rebuild (kv-server rebuild)" 1 - "n/a" failed - - - - - - -
fi
stop "${single_etcd_pids[@]}"

# --- three nodes -----------------------------------------------------------

three_node_note=""
say "three nodes: starting kv-server with --peers"
if start_kv kv3n 3; then
    three_kv_pids=("${kv_pids[@]}")
    three_kv=$kv_endpoints
    start_etcd etcd3n 3
    etcd_cpu_pids=$(pid_list "${etcd_pids[@]}")
    kv_cpu_pids=$(pid_list "${three_kv_pids[@]}")
    closed_loop_cells 3 "$etcd_endpoints" "$three_kv" 2.5+p99+cpu 4 6
    stop "${etcd_pids[@]}" "${three_kv_pids[@]}"
else
    stop "${kv_pids[@]}"
    three_node_note="skipped: the three kv-server nodes did not start: $(tail -1 "$work/kv3n3.log")"
    say "$three_node_note"
    row "three-node cells" 3 - "$three_node_note" - - - - - - - -
fi

# --- TLS and token auth -------------------------------------------------------

# A CA and a certificate for 127.0.0.1 signed by it, in $work.
make_certificates() {
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -days 2 -subj /CN=bench-ca \
        -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null &&
        openssl req "${ec[@]}" -subj /CN=127.0.0.1 \
            -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null &&
        openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
            -CAcreateserial -days 2 -out "$work/server.pem" \
            -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') 2>/dev/null
}

# secure_compare WORKLOAD KV-BENCH-ARGS...: runs the workload on the plain
# node and on the TLS + auth node (the first alternates) and adds a row to
# the second table.
secure_rows=()
secure_compare() {
    local workload=$1 plain_summary secure_summary order target
    shift
    if (((cell / 2) % 2 == 0)); then order="plain secure"; else order="secure plain"; fi
    for target in $order; do
        if [[ $target == plain ]]; then
            bench kv "$plain_kv" "$secure_connections" "$@"
            plain_summary=$summary
        else
            bench kv "$secure_kv" "$secure_connections" "${secure_args[@]}" "$@"
            secure_summary=$summary
        fi
    done
    local plain_ops secure_ops change="-"
    plain_ops=$(field ops_per_sec "$plain_summary")
    secure_ops=$(field ops_per_sec "$secure_summary")
    if [[ -n $plain_ops && -n $secure_ops ]]; then
        change=$(awk -v s="$secure_ops" -v p="$plain_ops" 'BEGIN { printf "%+.0f%%", (s / p - 1) * 100 }')
    fi
    secure_rows+=("| $workload | $secure_connections | ${plain_ops:+$(group "$plain_ops")/s} | ${secure_ops:+$(group "$secure_ops")/s} | $change | $(milliseconds "$(field p99_ms "$plain_summary")") | $(milliseconds "$(field p99_ms "$secure_summary")") |")
}

secure_connections=64
secure_note=""
say "TLS and token auth: a plain node and a node with --tls-cert and --auth"
if ! make_certificates; then
    secure_note="skipped: openssl could not make the certificates"
elif ! start_kv kvplain 1; then
    secure_note="skipped: the plain node did not start"
else
    plain_pids=("${kv_pids[@]}")
    plain_kv=$kv_endpoints
    if ! start_kv kvsecure 1 --tls-cert "$work/server.pem" --tls-key "$work/server.key" --auth; then
        secure_note="skipped: kv-server refused --tls-cert or --auth: $(tail -2 "$work/kvsecure1.log")"
    else
        secure_kv=$kv_endpoints
        root_token=$(curl -fsS --max-time 5 --cacert "$work/ca.pem" -X POST "$secure_kv/v1/acl/bootstrap" |
            sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
        if [[ -z $root_token ]]; then
            secure_note="skipped: the ACL bootstrap gave no token"
        else
            secure_args=(--cacert "$work/ca.pem" --token "$root_token")
            secure_compare put put
            "$kv_bench" --target kv --endpoints "$plain_kv" --connections 64 fill >/dev/null &&
                "$kv_bench" --target kv --endpoints "$secure_kv" --connections 64 "${secure_args[@]}" fill >/dev/null ||
                die "could not load the keys for the get cells"
            secure_compare "get linearizable" get --consistency linearizable
            secure_compare "get stale" get --consistency stale
        fi
    fi
    stop "${kv_pids[@]}" "${plain_pids[@]}"
fi
[[ -n $secure_note ]] && say "$secure_note"

# --- against an earlier build ------------------------------------------------

baseline_rows=()
baseline_note=""
if [[ -n ${KV_SERVER_BASELINE_BIN:-} ]]; then
    baseline_name=${BENCH_BASELINE_NAME:-$KV_SERVER_BASELINE_BIN}
    say "put: this build against $baseline_name, one node each, side by side"
    current_server=$kv_server
    kv_server=$KV_SERVER_BASELINE_BIN
    # Builds from before the peer port have no --peer-listen.
    kv_peer_port=1
    "$kv_server" --help 2>/dev/null | grep -q -- --peer-listen || kv_peer_port=0
    if ! start_kv kvbaseline 1; then
        baseline_note="skipped: the baseline build did not start: $(tail -2 "$work/kvbaseline1.log")"
        kv_server=$current_server
        kv_peer_port=1
    else
        baseline_pids=("${kv_pids[@]}")
        baseline_kv=$kv_endpoints
        kv_server=$current_server
        kv_peer_port=1
        if ! start_kv kvcurrent 1; then
            baseline_note="skipped: this build did not start"
        else
            current_kv=$kv_endpoints
            for connections in $put_connections; do
                if (((cell / 2) % 2 == 0)); then order="baseline current"; else order="current baseline"; fi
                for target in $order; do
                    if [[ $target == baseline ]]; then
                        bench kv "$baseline_kv" "$connections" put
                        baseline_summary=$summary
                    else
                        bench kv "$current_kv" "$connections" put
                        current_summary=$summary
                    fi
                done
                old_ops=$(field ops_per_sec "$baseline_summary")
                new_ops=$(field ops_per_sec "$current_summary")
                change="-"
                if [[ -n $old_ops && -n $new_ops ]]; then
                    change=$(awk -v n="$new_ops" -v o="$old_ops" 'BEGIN { printf "%+.0f%%", (n / o - 1) * 100 }')
                fi
                baseline_rows+=("| put | $connections | ${old_ops:+$(group "$old_ops")/s} | ${new_ops:+$(group "$new_ops")/s} | $change | $(milliseconds "$(field p99_ms "$baseline_summary")") | $(milliseconds "$(field p99_ms "$current_summary")") |")
            done
        fi
        stop "${kv_pids[@]}" "${baseline_pids[@]}"
    fi
    [[ -n $baseline_note ]] && say "$baseline_note"
fi

elapsed=$(($(date +%s) - started_at))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table ---------------------------------------------------------------

header="| workload | nodes | concurrency | etcd | kv-server | ratio | p99 etcd | p99 kv-server | CPU/write etcd | CPU/write kv | % of ceiling | goal |"
rule="|---|---|---|---|---|---|---|---|---|---|---|---|"
table=$(printf '%s\n' "$header" "$rule" "${rows[@]}")
echo
echo "$table"
echo
secure_header="| workload | connections | plain HTTP | TLS + token auth | change | p99 plain | p99 TLS + auth |"
secure_table=$(printf '%s\n' "$secure_header" "|---|---|---|---|---|---|---|" "${secure_rows[@]}")
[[ -n $secure_note ]] && secure_table="$secure_note"
echo "$secure_table"
baseline_section=""
if [[ -n ${KV_SERVER_BASELINE_BIN:-} ]]; then
    baseline_table=$(printf '%s\n' "| workload | connections | $baseline_name | this build | change | p99 $baseline_name | p99 this build |" \
        "|---|---|---|---|---|---|---|" "${baseline_rows[@]}")
    [[ -n $baseline_note ]] && baseline_table="$baseline_note"
    echo "$baseline_table"
    baseline_section="
## Against an earlier build

Puts on two more single nodes started side by side in the same run, one of
this build and one of $baseline_name, alternating which goes first.

$baseline_table
"
fi
echo

cores=$(nproc)
memory_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
filesystem=$(df -T "$work" | awk 'NR == 2 { print $2 }')
etcd_version=$("$etcd" --version 2>/dev/null | awk '/etcd Version/ { print $3 }')
kv_version=$("$kv_server" --version 2>/dev/null | awk '{ print $2 }')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Only changes to code count: this page and other docs do not change the numbers.
if ! git diff --quiet HEAD -- . ':(exclude)docs' ':(exclude)*.md' 2>/dev/null; then
    commit+=" (with uncommitted changes)"
fi
kv_origin="at commit $commit"
[[ -n ${KV_SERVER_BIN:-} ]] && kv_origin="from $KV_SERVER_BIN"

mkdir -p "$(dirname "$output")"
cat >"$output" <<EOF
# Benchmarks: kv-server against etcd

Written by \`make bench-compare\` (\`scripts/bench-compare.sh\`); each run
overwrites this page.

* **Date:** $(date -u '+%Y-%m-%d %H:%M UTC')
* **Machine:** $cores cores ($cpu), $memory_gib GiB memory, data on $filesystem
* **Versions:** etcd $etcd_version (Debian package etcd-server, JSON gateway);
  kv-server $kv_version $kv_origin
* **Command:** \`BENCH_SECONDS=$seconds BENCH_PUT_CONNECTIONS="$put_connections" BENCH_GET_CONNECTIONS=$get_connections BENCH_WATCHERS=$watchers BENCH_WATCH_KEYS=$watch_keys BENCH_REPLAY_RECORDS=$replay_records $command_line\`
* **Run time:** $((elapsed / 60)) min $((elapsed % 60)) s; load average $load_before before,
  $load_after after (anything above 0 before is other work on the machine)

$table

How it is measured:

* One client, \`kv-bench\` (\`integration-tests/src/bin/kv-bench.rs\`), drives
  both servers over HTTP/1.1 keep-alive: N connections, each with one request
  in flight and driven by its own worker (hyper's connection-level client;
  the tool allocates with jemalloc, as the server), for $seconds s per cell;
  the servers and the client share the machine's $cores cores. etcd is
  driven through its JSON gateway
  (\`POST /v3/kv/put\`, \`POST /v3/kv/range\`, base64 keys and values).
* Writes are 256-byte values on 10,000 keys; reads are of those keys.
  \`get stale\` is kv-server's \`consistency=stale\` against etcd's
  \`serializable: true\`.
* Both fsync every acknowledged write (etcd's default; kv-server's raft log).
  Data directories are on the same $filesystem file system.
* On three nodes the connections are spread over all members, as etcd's own
  benchmark tool spreads its clients over the endpoints; followers forward.
* ratio is kv-server's throughput over etcd's; p99 is the latency of
  successful operations. The goals are those of issue 18.
* HTTP ceiling: the same kv-server (started with the hidden
  \`--bench-noop-route\`) answering the put's request (PUT, 256-byte body)
  on \`/v1/bench/noop/{key}\`, which reads the body and answers 204 behind
  the same listener and layers as \`/v1/kv\` (limits, forwarding, auth,
  metrics), driven by the same client just before the put cell of that
  concurrency. "% of ceiling" is a put cell's kv-server throughput over it
  (the three-node cells against the one-node ceiling).
* CPU/write: the servers' user and system time over the cell
  (\`/proc/<pid>/stat\`, summed over every member on three nodes) divided by
  the operations acknowledged in it: per write in the put and txn cells (a
  transaction counts once), per read in the get cells, per operation in
  the mixed cells. The clock ticks every 10 ms; a 10 s cell makes that
  noise well under 1 %.
* watch: $(group "$watchers") watchers on each server, a writer updating
  their keys at 100 writes/s. kv-server's are long-polls over HTTP/2
  ($watch_connections connections); etcd's are watches on gRPC streams
  ($watch_connections streams on as many connections, each carrying its
  share, as etcd's own client multiplexes watches on one stream), the
  writer going through its JSON gateway like the other cells. Delivery
  latency runs from the write's acknowledgement to the watcher's answer or
  event (a watcher woken before the writer saw its answer counts as 0).
  Memory is the growth of the server's VmRSS once every watcher waits.
* txn: a transaction on a random key with one condition (its mod revision
  below 2^53, always true) and puts of the value to it and the next two
  keys; etcd's is \`POST /v3/kv/txn\` with the same compare and puts.
* lease keep-alive: $(group "$leases") leases (60 s TTL) each kept alive once a
  second over 64 connections; CPU is the leader's user and system time over
  the cell (\`/proc/<pid>/stat\`), memory its VmRSS after the cell (and its
  change since before the grants, below zero when memory the watch cell
  took is given back meanwhile).
* replay and rebuild read every record of the compacted topic (the
  $(group "$replay_records") loaded records plus the earlier cells' writes).
  ${load_rate:+Loading them through the API ran at $(group "$load_rate") puts/s with 256 connections.}
${three_node_note:+* Three nodes: $three_node_note.}

## What TLS and token auth cost

Two more single nodes, started side by side in the same run: one as above,
one with TLS on its client port (\`--tls-cert\`, an ECDSA P-256 certificate)
and \`--auth\` on, driven with the root token. Both answer the same kv-bench
cells, alternating which goes first; connections are kept alive, so the cost
is TLS's record encryption and the token check on each request, not the
handshake.

$secure_table
$baseline_section
EOF
say "the table is in $output (the run took $((elapsed / 60)) min $((elapsed % 60)) s)"
