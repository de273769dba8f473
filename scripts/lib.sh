# Shell helpers of the scripts that start servers (bench-compare.sh,
# bench-namesrv.sh, test-rocketmq.sh): a work directory, processes started in
# the background and all stopped on exit, free loopback ports, and waits that
# poll. Sourced after the script sets script_name and work_parent; sourcing
# makes the work directory (removed on exit unless KEEP_WORK=1 or the script
# died) and the trap.

say() { printf '[%s] %s: %s\n' "$(date +%H:%M:%S)" "$script_name" "$*" >&2; }
die() {
    say "error: $*"
    # The logs an error names stay to be read.
    KEEP_WORK=1
    exit 1
}

mkdir -p "$work_parent"
work=$(mktemp -d "$work_parent/$script_name.XXXXXX")
work=$(cd "$work" && pwd)
pids=()

# stop_pid PID [SIGNAL]: sends SIGNAL (TERM), then KILL after 10 s.
stop_pid() {
    local pid=$1 signal=${2:-TERM} waited=0
    kill -"$signal" "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# Stops every process this script started and removes the work directory.
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        stop_pid "$pid"
    done
    pids=()
    if [[ ${KEEP_WORK:-0} == 1 ]]; then say "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start LOG CMD...: runs CMD in the background with its output in LOG; the
# pid is left in $started.
start() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    started=$!
    pids+=("$started")
}

# forget PID...: drops pids the script stopped itself.
forget() {
    local pid kept=()
    for pid in "${pids[@]}"; do
        [[ " $* " == *" $pid "* ]] || kept+=("$pid")
    done
    pids=("${kept[@]}")
}

# stop PID...: stops them now and forgets them.
stop() {
    local pid
    for pid in "$@"; do
        stop_pid "$pid"
    done
    forget "$@"
}

# free_port [N]: sets $port to a loopback port nothing listens on and this
# script has not handed out, with ports port-N..port+N free too (a variable,
# not output: a $(...) subshell would forget the ports it handed out).
# Below the ephemeral range (32768 and up), where client sockets of earlier
# runs may still hold a port.
used_ports=" "
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && [[ $used_ports != *" $1 "* ]]; }
free_port() {
    local spread=${1:-0} candidate offset ok
    while true; do
        candidate=$((12000 + RANDOM % 20000))
        ok=1
        for ((offset = -spread; offset <= spread; offset++)); do
            port_free $((candidate + offset)) || { ok=0; break; }
        done
        if ((ok)); then
            for ((offset = -spread; offset <= spread; offset++)); do used_ports+="$((candidate + offset)) "; done
            port=$candidate
            return
        fi
    done
}

# wait_port PID PORT [SECONDS]: until 127.0.0.1:PORT accepts connections
# while PID lives (30 s at most by default).
wait_port() {
    local pid=$1 port=$2 deadline=$((SECONDS + ${3:-30}))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# wait_ready PID URL PATTERN: until `curl URL` prints something matching
# PATTERN, while PID lives (30 s at most). An https URL is checked against
# $work/ca.pem.
wait_ready() {
    local pid=$1 url=$2 pattern=$3 tries=0
    while ((tries < 300)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if curl -fsS --max-time 1 --cacert "$work/ca.pem" "$url" 2>/dev/null | grep -q "$pattern"; then
            return 0
        fi
        sleep 0.1
        tries=$((tries + 1))
    done
    return 1
}
