# The benchmark scripts' own helpers (bench-compare.sh, bench-namesrv.sh):
# kv-server nodes on free ports, kv-bench runs and the table. Sourced after
# scripts/lib.sh, with kv_server and kv_bench set.

# start_kv NAME COUNT [ARGS...]: COUNT kv-server nodes (--peers when more
# than one), each given ARGS too (https when they hold --tls-cert); sets
# kv_pids, kv_endpoints, kv_data_dirs, and with kv_namesrv=1 kv_namesrvs
# (their name-server addresses). Fails (status 1) if a node exits at
# start, e.g. because it refuses --peers.
start_kv() {
    local name=$1 count=$2 i peers="" ports=() peer_ports=() scheme=http
    shift 2
    [[ " $* " == *" --tls-cert "* ]] && scheme=https
    for ((i = 1; i <= count; i++)); do
        free_port
        ports+=("$port")
        free_port
        peer_ports+=("$port")
        peers+="${peers:+,}$i=http://127.0.0.1:${peer_ports[i - 1]}"
    done
    kv_pids=()
    kv_endpoints=""
    kv_namesrvs=""
    kv_data_dirs=()
    for ((i = 1; i <= count; i++)); do
        local args=(--node-id "$i" --listen "127.0.0.1:${ports[i - 1]}" --data-dir "$work/$name$i")
        # A baseline build from before the peer port takes no --peer-listen.
        ((${kv_peer_port:-1})) && args+=(--peer-listen "127.0.0.1:${peer_ports[i - 1]}")
        ((count > 1)) && args+=(--peers "$peers")
        # Nodes must not all take the name server's 9876: each gets a free
        # port with kv_namesrv=1, else none (builds from before it have no
        # --namesrv-listen).
        if ((${kv_namesrv:-0})); then
            free_port
            args+=(--namesrv-listen "127.0.0.1:$port")
            kv_namesrvs+="${kv_namesrvs:+,}127.0.0.1:$port"
        elif "$kv_server" --help 2>/dev/null | grep -q -- --namesrv-listen; then
            args+=(--namesrv-listen off)
        fi
        start "$work/$name$i.log" env NO_COLOR=1 "$kv_server" "${args[@]}" "$@"
        kv_pids+=("$started")
        kv_endpoints+="${kv_endpoints:+,}$scheme://127.0.0.1:${ports[i - 1]}"
        kv_data_dirs+=("$work/$name$i")
    done
    # /readyz once a leader is known; builds from before it (A/B runs of
    # older commits) said so on /healthz.
    local ready_path=/healthz ready_pattern='"ok"'
    if "$kv_server" --help 2>/dev/null | grep -q -- --quota-bytes; then
        ready_path=/readyz ready_pattern='"ready"'
    fi
    for ((i = 1; i <= count; i++)); do
        if ! wait_ready "${kv_pids[i - 1]}" "$scheme://127.0.0.1:${ports[i - 1]}$ready_path" "$ready_pattern"; then
            say "kv-server $name$i did not become healthy: $(tail -5 "$work/$name$i.log")"
            return 1
        fi
    done
}

# --- measuring -------------------------------------------------------------

rows=()
cell=0

# bench TARGET ENDPOINTS CONNECTIONS ARGS...: runs kv-bench, shows its report,
# and leaves its summary line in $summary (empty if it failed).
bench() {
    local target=$1 endpoints=$2 connections=$3 log
    shift 3
    log="$work/bench-$((cell += 1)).log"
    summary=""
    say "$target: kv-bench $* (connections $connections)"
    if "$kv_bench" --target "$target" --endpoints "$endpoints" --connections "$connections" \
        --duration "${seconds}s" --summary "$@" >"$log" 2>&1; then
        grep -v '^summary ' "$log" >&2 || true
        summary=$(grep '^summary ' "$log" | tail -1)
    else
        say "kv-bench failed: $(tail -3 "$log")"
    fi
}

# The value of field NAME in summary line LINE.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# 1234567.8 -> 1,234,568
group() {
    awk -v n="$1" 'BEGIN { n = sprintf("%.0f", n); s = "";
        while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) }
        print n s }'
}

# 12.3 -> "+12.3", -12.3 -> "−12.3": a change, with its sign.
signed() {
    if [[ $1 == -* ]]; then echo "−${1#-}"; else echo "+$1"; fi
}

# 12.3456 -> "12.3 ms"; nothing for nothing.
milliseconds() {
    [[ -n $1 ]] && awk -v ms="$1" 'BEGIN { printf "%.1f ms", ms }'
    return 0
}

# 12.34 -> "12 µs"; "-" for nothing.
microseconds() {
    if [[ -n $1 ]]; then awk -v us="$1" 'BEGIN { printf "%.0f µs", us }'; else echo -; fi
}

# percent_of PART WHOLE -> "42%".
percent_of() {
    awk -v p="$1" -v w="$2" 'BEGIN { if (w > 0) printf "%.0f%%", 100 * p / w; else print "-" }'
}

# pid_list PID... -> "1,2,3", for kv-bench --server-pids.
pid_list() {
    local IFS=,
    echo "$*"
}

# row CELLS...: one line of the table.
row() {
    local line="|" value
    for value in "$@"; do line+=" $value |"; done
    rows+=("$line")
}

