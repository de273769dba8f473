#!/usr/bin/env bash
# `make test-rocketmq`: real RocketMQ peers that we did not write (rocketmq-rust's
# broker, admin CLI and client) against a 3-node kv cluster serving the name
# server protocol, then the same steps against 3 x rocketmq-namesrv-rust, and a
# side-by-side table of what each step showed. Loopback only; every process is
# started here and killed on exit; every wait polls and is bounded.
#
# Steps, on each side:
#   1. three name servers (kv: a Raft cluster with --namesrv-listen and a
#      broker lease of RMQ_TTL_S), and the codec conformance check against one;
#   2. broker-a and broker-b, registered with all three; then broker-c, of
#      a cluster of its own, given only name servers 1 and 2 (a broker whose
#      configuration or network misses one name server): which name servers
#      know it (apache/rocketmq #4807: name servers that disagree);
#   3. a topic created with the admin CLI, N messages produced and consumed;
#   4. kill -9 of the kv leader (of name server 1 on the other side): routes
#      still served by the other two, the producer goes on;
#   5. kill -9 of broker-b: how long until its queues leave the route on every
#      live node, and for how long the nodes disagree;
#   6. the killed name server restarted: does it serve the topic at once, or only
#      after a broker's next registration (every 30 s);
#   7. the topic deleted with the admin CLI told of name server 1 only: does
#      any node still serve it (#7052: a delete that reaches some name
#      servers and not others).
#
# Needs scripts/rocketmq-install.sh to have run (make test-rocketmq runs it;
# the first install takes 27 to 55 minutes on 2 cores), a release kv-server,
# and rocketmq-e2e (built here, under the same cache: 2 minutes the first
# time). A run takes 3-4 minutes.
#
# Environment (all optional):
#   ROCKETMQ_VERSION, ROCKETMQ_CACHE   as for rocketmq-install.sh
#   KV_SERVER_BIN      the kv-server binary (default target/release/kv-server)
#   RMQ_MESSAGES       messages produced in step 3 (default 1000)
#   RMQ_MORE_MESSAGES  messages produced in step 4 (default 200)
#   RMQ_TTL_S          kv-server --namesrv-broker-ttl-s (default 40: longer than the
#                      brokers' 30 s registration period, or live brokers expire)
#   RMQ_SIDES          which sides to run, "kv namesrv" by default
#   RMQ_DOC            where the table goes (default docs/namesrv.md; "-" for none)
#   RMQ_KEEP           1 keeps the work directory with every log (a failed
#                      run keeps it anyway)
#   RMQ_E2E_BIN        a rocketmq-e2e binary to use instead of building one
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
version=${ROCKETMQ_VERSION:-1.0.0}
cache=${ROCKETMQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openmessaging-kv/rocketmq-$version}
bin=$cache/bin
e2e=$cache/target/release/rocketmq-e2e
kv_server=${KV_SERVER_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/kv-server}
messages=${RMQ_MESSAGES:-1000}
more_messages=${RMQ_MORE_MESSAGES:-200}
ttl=${RMQ_TTL_S:-40}
sides=${RMQ_SIDES:-kv namesrv}
doc=${RMQ_DOC:-$repo/docs/namesrv.md}
cluster=E2ECluster
topic=E2E_ROUTES

script_name=test-rocketmq
work_parent=${TMPDIR:-/tmp}
KEEP_WORK=${RMQ_KEEP:-${KEEP_WORK:-0}}
source "$repo/scripts/lib.sh"

for binary in rocketmq-broker-rust rocketmq-namesrv-rust rocketmq-admin-cli; do
    [[ -x $bin/$binary ]] || die "$bin/$binary is missing: run scripts/rocketmq-install.sh"
done
[[ $sides != *kv* || -x $kv_server ]] || die "$kv_server is missing: cargo build --release -p kv-server"
command -v curl >/dev/null || die "curl is needed"
if [[ -n ${RMQ_E2E_BIN:-} ]]; then
    e2e=$RMQ_E2E_BIN
else
    # In the install's build directory, so it reuses the RocketMQ crates built
    # there: about 2 minutes the first time, nothing after.
    say "building rocketmq-e2e into $cache/target"
    (cd "$repo/rocketmq-e2e" && CARGO_TARGET_DIR=$cache/target nice -n 19 cargo build --release --locked) ||
        die "rocketmq-e2e did not build"
fi

# route ADDR TOPIC: one line, "code=0 brokers=broker-a:4,..." or "code=17 ...",
# or "down" when the name server does not answer.
route() {
    local line
    line=$("$e2e" route --namesrv "$1" --topic "$2" --timeout-s 2 2>/dev/null | grep '^ROUTE ') || { echo down; return; }
    echo "${line#* topic=$2 }"
}

# poll_routes SECONDS CONDITION ADDR...: polls every ADDR's route of $topic
# until CONDITION (a function given the route line) holds on all of them;
# returns 1 at the deadline. $routes_seen keeps the last line of each,
# $routes_first the first.
poll_routes() {
    local seconds=$1 condition=$2 addr all deadline
    shift 2
    deadline=$((SECONDS + seconds))
    routes_first=""
    while true; do
        all=1
        routes_seen=""
        for addr in "$@"; do
            line=$(route "$addr" "$topic")
            routes_seen+="$addr: $line; "
            "$condition" "$line" || all=0
        done
        [[ -n $routes_first ]] || routes_first=$routes_seen
        ((all)) && return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}
has_both() { [[ $1 == "code=0 brokers=broker-a:"*",broker-b:"* ]]; }
has_a() { [[ $1 == "code=0 brokers=broker-a:"* ]]; }
has_a_only() { [[ $1 == "code=0 brokers=broker-a:"* && $1 != *broker-b* ]]; }
gone() { [[ $1 == code=17* ]]; }

now_ms() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

declare -A result

# --- name servers ----------------------------------------------------------

# start_nameservers SIDE: three name servers; sets ns_addr[1..3] and ns_pid[1..3].
declare -a ns_addr ns_pid ns_http ns_cmd
start_nameservers() {
    local side=$1 i peers="" http_ports=() peer_ports=() ns_ports=()
    for i in 1 2 3; do
        free_port; ns_ports[i]=$port
        free_port; http_ports[i]=$port
        free_port; peer_ports[i]=$port
        peers+="${peers:+,}$i=http://127.0.0.1:${peer_ports[i]}"
    done
    for i in 1 2 3; do
        ns_addr[i]=127.0.0.1:${ns_ports[i]}
        if [[ $side == kv ]]; then
            ns_http[i]=http://127.0.0.1:${http_ports[i]}
            ns_cmd[i]="$kv_server --node-id $i --listen 127.0.0.1:${http_ports[i]} \
--peer-listen 127.0.0.1:${peer_ports[i]} --data-dir $work/$side/n$i --peers $peers \
--namesrv-listen ${ns_addr[i]} --namesrv-broker-ttl-s $ttl"
        else
            mkdir -p "$work/$side/n$i"
            ns_cmd[i]="$bin/rocketmq-namesrv-rust --rocketmqHome $work/$side/n$i \
--listenPort ${ns_ports[i]} --bindAddress 127.0.0.1"
        fi
        start_nameserver "$side" "$i"
    done
    for i in 1 2 3; do
        wait_port "${ns_pid[i]}" "${ns_addr[i]##*:}" 60 ||
            die "$side name server $i did not listen on ${ns_addr[i]} (log $work/$side/n$i.log)"
    done
    if [[ $side == kv ]]; then
        local deadline=$((SECONDS + 60))
        until curl -fsS --max-time 1 "${ns_http[1]}/v1/cluster" 2>/dev/null | grep -q '"leader":[0-9]'; do
            ((SECONDS < deadline)) || die "the kv cluster elected no leader in 60 s"
            sleep 0.2
        done
    fi
    namesrv_list="${ns_addr[1]};${ns_addr[2]};${ns_addr[3]}"
}
start_nameserver() {
    local side=$1 i=$2
    # shellcheck disable=SC2086 # ns_cmd holds a command line of plain words
    start "$work/$side/n$i.log" ${ns_cmd[i]}
    ns_pid[i]=$started
}

# --- brokers ---------------------------------------------------------------

declare -A broker_pid
# start_broker SIDE NAME [NAMESRVS [CLUSTER]]: a broker registering with
# NAMESRVS (default all three) as a member of CLUSTER (default $cluster).
start_broker() {
    local side=$1 name=$2 dir="$work/$1/$2" namesrvs=${3:-$namesrv_list} broker_cluster=${4:-$cluster}
    free_port 2
    mkdir -p "$dir/store/commitlog"
    cat >"$dir/broker.properties" <<EOF
brokerClusterName=$broker_cluster
brokerName=$name
brokerId=0
listenPort=$port
haListenPort=$((port + 1))
brokerIP1=127.0.0.1
namesrvAddr=$namesrvs
storePathRootDir=$dir/store
storePathCommitLog=$dir/store/commitlog
EOF
    ROCKETMQ_HOME=$dir start "$dir.log" "$bin/rocketmq-broker-rust" -c "$dir/broker.properties"
    broker_pid[$name]=$started
}

admin() {
    admin_at "$namesrv_list" "$@"
}
# admin_at NAMESRVS ARGS...: the admin CLI told of NAMESRVS only.
admin_at() {
    local namesrvs=$1
    shift
    timeout 60 "$bin/rocketmq-admin-cli" topic "$@" -n "$namesrvs" >>"$work/admin.log" 2>&1
}

# --- one side ----------------------------------------------------------------

run_side() {
    local side=$1 i t0 leader victim live=() line
    say "== $side: starting three name servers"
    mkdir -p "$work/$side"
    start_nameservers "$side"

    say "== $side: codec conformance against name server 1"
    if "$e2e" conformance --namesrv "${ns_addr[1]}" >"$work/$side/conformance.log" 2>&1; then
        result[$side,1]="all $(grep -o 'rows=[0-9]*' "$work/$side/conformance.log" | cut -d= -f2) checks ok"
    else
        local failed_codes
        failed_codes=$(awk '/FAILED/ { print $1 }' "$work/$side/conformance.log" | sort -u | paste -sd, -)
        result[$side,1]="$(grep -o 'failed=[0-9]*' "$work/$side/conformance.log" | cut -d= -f2 || true) of \
$(grep -o 'rows=[0-9]*' "$work/$side/conformance.log" | cut -d= -f2 || true) checks failed (codes ${failed_codes:-?})"
    fi
    cat "$work/$side/conformance.log" >&2

    say "== $side: step 2, broker-a and broker-b"
    start_broker "$side" broker-a
    start_broker "$side" broker-b
    local deadline=$((SECONDS + 90)) registered
    while true; do
        registered=1
        for i in 1 2 3; do
            [[ $(route "${ns_addr[i]}" broker-a) == code=0* && $(route "${ns_addr[i]}" broker-b) == code=0* ]] ||
                registered=0
        done
        ((registered)) && break
        ((SECONDS < deadline)) || die "$side: the brokers did not register with all three name servers in 90 s"
        kill -0 "${broker_pid[broker-a]}" && kill -0 "${broker_pid[broker-b]}" ||
            die "$side: a broker exited (logs $work/$side/broker-*.log)"
        sleep 0.5
    done
    result[$side,2]="both brokers on all 3 nodes"

    # A broker that registers with two name servers of three. Its own
    # cluster keeps it out of the topic of the steps below.
    start_broker "$side" broker-c "${ns_addr[1]};${ns_addr[2]}" "${cluster}C"
    deadline=$((SECONDS + 90))
    until [[ $(route "${ns_addr[1]}" broker-c) == code=0* && $(route "${ns_addr[2]}" broker-c) == code=0* ]]; do
        ((SECONDS < deadline)) || die "$side: broker-c did not register with name servers 1 and 2 in 90 s"
        kill -0 "${broker_pid[broker-c]}" || die "$side: broker-c exited (log $work/$side/broker-c.log)"
        sleep 0.5
    done
    local knowing=0 unknowing=""
    for i in 1 2 3; do
        if [[ $(route "${ns_addr[i]}" broker-c) == code=0* ]]; then
            knowing=$((knowing + 1))
        else
            unknowing+="${unknowing:+, }$i"
        fi
    done
    if [[ -z $unknowing ]]; then
        result[$side,2b]="3 of 3 serve its routes"
    else
        result[$side,2b]="$knowing of 3 serve its routes; name server $unknowing answers: $(route "${ns_addr[3]}" broker-c)"
    fi
    stop_pid "${broker_pid[broker-c]}"
    forget "${broker_pid[broker-c]}"

    say "== $side: step 3, create $topic, produce $messages, consume them"
    admin updateTopic -c "$cluster" -t "$topic" -r 4 -w 4 || die "$side: admin updateTopic failed ($work/admin.log)"
    poll_routes 60 has_both "${ns_addr[@]}" || die "$side: $topic not routed to both brokers: $routes_seen"
    "$e2e" produce --namesrv "$namesrv_list" --topic "$topic" --count "$messages" --prefix "$side-a" \
        >"$work/$side/produce1.log" 2>&1 || die "$side: producing failed: $(tail -3 "$work/$side/produce1.log")"
    "$e2e" consume --namesrv "$namesrv_list" --topic "$topic" --group "$side-g1" --count "$messages" \
        --timeout-s 120 >"$work/$side/consume1.log" 2>&1 ||
        die "$side: consuming failed: $(tail -3 "$work/$side/consume1.log")"
    result[$side,3]="$messages sent, $messages received"

    say "== $side: step 4, kill -9 a name server"
    if [[ $side == kv ]]; then
        leader=$(curl -fsS --max-time 2 "${ns_http[1]}/v1/cluster" | grep -o '"leader":[0-9]*' | cut -d: -f2)
        [[ -n $leader ]] || die "kv: no leader to kill"
        victim=$leader
    else
        victim=1
    fi
    kill -KILL "${ns_pid[victim]}"
    wait "${ns_pid[victim]}" 2>/dev/null || true
    forget "${ns_pid[victim]}"
    for i in 1 2 3; do ((i == victim)) || live+=("${ns_addr[i]}"); done
    t0=$(now_ms)
    if poll_routes 30 has_both "${live[@]}"; then
        if [[ $routes_first == "$routes_seen" ]]; then
            result[$side,4a]="yes, at once"
        else
            result[$side,4a]="yes, $(secs_since "$t0") s after the kill (first answers: ${routes_first% })"
        fi
    else
        result[$side,4a]="no: $routes_seen"
    fi
    "$e2e" produce --namesrv "$namesrv_list" --topic "$topic" --count "$more_messages" --prefix "$side-b" \
        >"$work/$side/produce2.log" 2>&1 || die "$side: producing with a dead name server failed: $(tail -3 "$work/$side/produce2.log")"
    "$e2e" consume --namesrv "$namesrv_list" --topic "$topic" --group "$side-g2" \
        --count $((messages + more_messages)) --timeout-s 120 >"$work/$side/consume2.log" 2>&1 ||
        die "$side: consuming with a dead name server failed: $(tail -3 "$work/$side/consume2.log")"
    result[$side,4b]="yes: $more_messages more sent, all $((messages + more_messages)) received"

    say "== $side: step 5, kill -9 broker-b"
    kill -KILL "${broker_pid[broker-b]}"
    wait "${broker_pid[broker-b]}" 2>/dev/null || true
    forget "${broker_pid[broker-b]}"
    local bound=$((ttl + 10)) first="" last="" disagree_ms=0 max_disagree=0 tick prev dropped distinct lines
    [[ $side == kv ]] || bound=150
    t0=$(now_ms)
    prev=$t0
    while true; do
        dropped=0
        lines=()
        for addr in "${live[@]}"; do
            lines+=("$(route "$addr" "$topic")")
            has_a_only "${lines[-1]}" && dropped=$((dropped + 1))
        done
        distinct=$(printf '%s\n' "${lines[@]}" | sort -u | wc -l)
        tick=$(now_ms)
        ((distinct > 1)) && disagree_ms=$((disagree_ms + tick - prev))
        ((distinct - 1 > max_disagree)) && max_disagree=$((distinct - 1))
        prev=$tick
        [[ -z $first && $dropped -gt 0 ]] && first=$(secs_since "$t0")
        if ((dropped == ${#live[@]})); then
            last=$(secs_since "$t0")
            break
        fi
        (((tick - t0) / 1000 < bound)) || break
        sleep 0.5
    done
    if [[ -n $last ]]; then
        result[$side,5a]="${last} s (first node ${first} s)"
    else
        result[$side,5a]="not within ${bound} s (first node ${first:-never})"
    fi
    result[$side,5b]="$max_disagree of ${#live[@]} for $(awk -v ms="$disagree_ms" 'BEGIN { printf "%.1f", ms / 1000 }') s"

    say "== $side: step 6, restart name server $victim"
    start_nameserver "$side" "$victim"
    t0=$(now_ms)
    wait_port "${ns_pid[victim]}" "${ns_addr[victim]##*:}" 60 || die "$side: name server $victim did not come back"
    local up first_answer
    up=$(secs_since "$t0")
    first_answer=$(route "${ns_addr[victim]}" "$topic")
    t0=$(now_ms)
    if has_a_only "$first_answer"; then
        result[$side,6]="yes, at once (first answer ${up} s after start)"
    elif poll_routes 3 has_a_only "${ns_addr[victim]}"; then
        result[$side,6]="yes, $(secs_since "$t0") s after it listened, before any broker registered again \
(first answer: $first_answer)"
    elif poll_routes 40 has_a_only "${ns_addr[victim]}"; then
        result[$side,6]="no: $first_answer; served after $(secs_since "$t0") s (broker heartbeat)"
    else
        result[$side,6]="no: $first_answer; still not after 43 s"
    fi

    say "== $side: step 7, delete $topic through name server 1 only"
    admin_at "${ns_addr[1]}" deleteTopic -c "$cluster" -t "$topic" ||
        say "$side: admin deleteTopic failed ($work/admin.log)"
    t0=$(now_ms)
    if poll_routes 10 gone "${ns_addr[@]}"; then
        result[$side,7]="0 of 3 (all gone after $(secs_since "$t0") s)"
    else
        local serving=0
        for i in 1 2 3; do gone "$(route "${ns_addr[i]}" "$topic")" || serving=$((serving + 1)); done
        result[$side,7]="$serving of 3 still serve it after 10 s: $routes_seen"
    fi

    say "== $side: done, stopping"
    for i in 1 2 3; do stop_pid "${ns_pid[i]}"; forget "${ns_pid[i]}"; done
    stop_pid "${broker_pid[broker-a]}"
    forget "${broker_pid[broker-a]}"
}

for side in $sides; do
    run_side "$side"
done

# What this project promises (issue 16), checked on the kv side only; the
# other side is observed, not judged.
unmet=()
expect() {
    local step=$1 pattern=$2 what=$3
    [[ ${result[kv,$step]:-} =~ $pattern ]] || unmet+=("step $step ($what): ${result[kv,$step]:-not run}")
}
if [[ $sides == *kv* ]]; then
    expect 1 '^all ' "every request code conforms"
    expect 4a '^yes' "the other two serve the routes"
    expect 5a '^[0-9.]+ s' "broker-b gone within the TTL + 10 s"
    expect 2b '^3 of 3' "a broker registered with two name servers is served by all three"
    expect 6 '^yes' "a restarted node serves the routes within 3 s, before a broker registers again"
    expect 7 '^0 of 3' "no node serves a deleted topic"
fi

# --- the table ----------------------------------------------------------------

cell() { echo "${result[$1,$2]:-not run}"; }
table() {
    echo "| step | 3 x kv-server (this project) | 3 x rocketmq-namesrv-rust |"
    echo "|---|---|---|"
    echo "| 1. codec conformance (rocketmq-e2e conformance, every request code) | $(cell kv 1) | $(cell namesrv 1) |"
    echo "| 2. brokers registered | $(cell kv 2) | $(cell namesrv 2) |"
    echo "| 2. broker-c registered with name servers 1 and 2 only: who serves its routes | $(cell kv 2b) | $(cell namesrv 2b) |"
    echo "| 3. $messages messages through a topic made by the admin CLI | $(cell kv 3) | $(cell namesrv 3) |"
    echo "| 4. name server killed (kv: the leader): the other two serve the routes | $(cell kv 4a) | $(cell namesrv 4a) |"
    echo "| 4. the producer goes on | $(cell kv 4b) | $(cell namesrv 4b) |"
    echo "| 5. broker-b killed: its queues gone from every live node after | $(cell kv 5a) | $(cell namesrv 5a) |"
    echo "| 5. nodes that disagree on the route meanwhile | $(cell kv 5b) | $(cell namesrv 5b) |"
    echo "| 6. restarted name server serves the topic | $(cell kv 6) | $(cell namesrv 6) |"
    echo "| 7. topic deleted, the admin CLI told of name server 1 only: nodes still serving it | $(cell kv 7) | $(cell namesrv 7) |"
}
table
# The run goes between two markers in docs/namesrv.md (in the section
# "## Against real RocketMQ peers", added at the end if missing).
if [[ $doc != - && $sides == *kv* && $sides == *namesrv* ]]; then
    begin="<!-- test-rocketmq run: begin -->"
    end="<!-- test-rocketmq run: end -->"
    {
        echo "$begin"
        echo "\`make test-rocketmq\`, $(date -u +%Y-%m-%d), rocketmq-rust $version, $(nproc) cores; broker"
        echo "lease TTL ${ttl} s on the kv side, rocketmq-namesrv-rust with its defaults:"
        echo
        table
        echo "$end"
    } >"$work/run.md"
    if [[ -f $doc ]] && grep -qF "$begin" "$doc"; then
        awk -v b="$begin" -v e="$end" -v f="$work/run.md" '
            $0 == b { while ((getline line < f) > 0) print line; skip = 1; next }
            $0 == e { skip = 0; next }
            !skip' "$doc" >"$doc.new"
    else
        { [[ -f $doc ]] && cat "$doc" && echo; echo "## Against real RocketMQ peers"; echo; cat "$work/run.md"; } >"$doc.new"
    fi
    mv "$doc.new" "$doc"
    say "table written to $doc"
fi
if ((${#unmet[@]})); then
    say "FAILED on the kv side:"
    printf '  %s\n' "${unmet[@]}" >&2
    exit 1
fi
[[ $sides != *kv* ]] || say "kv side: every step as promised"
