# The two commands a fresh machine needs: `make run` and `make test`.
CARGO ?= cargo

.PHONY: man run test test-ui test-full fmt-check clippy unit bench-compaction bench-compare bench-namesrv build cluster cluster-stop test-rocketmq chaos fuzz

run:
	$(CARGO) run --release -p kv-server

test: fmt-check clippy unit

fmt-check:
	rustup component add rustfmt clippy >/dev/null 2>&1 || true
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The integration tests start the kv-server, kvctl and kv-bench binaries, which
# `cargo test` does not build for another package's tests: build them first.
unit:
	$(CARGO) build -p kv-server
	$(CARGO) build -p kv-client --bins
	$(CARGO) build -p integration-tests --bins
	$(CARGO) test --workspace

bench-compaction:
	$(CARGO) bench -p compaction --bench topic

# etcd 3.4 (installed from Debian's etcd-server if missing) against kv-server,
# one node then three, measured by kv-bench; the table goes to stdout and
# docs/benchmarks.md. scripts/bench-compare.sh lists the knobs (BENCH_SECONDS, …).
bench-compare:
	$(CARGO) build --release -p kv-server -p integration-tests --bins
	BENCH_COMMAND="make bench-compare" scripts/bench-compare.sh

# kv-server's name server against rocketmq-rust's in-memory one
# (rocketmq-namesrv-rust, installed into a cache by
# scripts/rocketmq-install.sh, about 9 minutes the first time), one node then
# three; the tables go to docs/benchmarks-namesrv.md.
bench-namesrv:
	$(CARGO) build --release -p kv-server -p integration-tests --bins
	scripts/bench-namesrv.sh

# Allocations and bytes allocated per put and per get, from kv-server's
# router in (a counting allocator, a one-node server in-process).
# ALLOC_SITES=50 also prints where the allocations of 50 puts come from.
# The release profile, so it shares bench-compare's build.
.PHONY: bench-alloc
bench-alloc:
	$(CARGO) bench -p kv-server --bench allocations --profile release

build:
	$(CARGO) build --workspace --release

# Man pages of kv-server and kvctl, from their command lines (clap_mangen):
# target/man/kv-server.1 and target/man/kvctl.1 (`man -l target/man/kvctl.1`).
man:
	$(CARGO) build --release -p kv-server -p kv-client --bins
	@mkdir -p $(TARGET_DIR)/man
	$(TARGET_DIR)/release/kv-server man > $(TARGET_DIR)/man/kv-server.1
	$(TARGET_DIR)/release/kvctl man > $(TARGET_DIR)/man/kvctl.1
	@echo "man pages in $(TARGET_DIR)/man"

# The web console in headless Chromium (Debian's chromium, driven by
# playwright-core from ui-tests/) against a real 3-node cluster and a node with
# --auth. scripts/ui-install.sh installs both when missing. `.ci/run` runs it
# after `make test`. KV_UI_SCREENSHOTS=$(CURDIR)/docs/ui renews the screenshots.
test-ui:
	scripts/ui-install.sh
	$(CARGO) build -p kv-server
	$(CARGO) test -p integration-tests --test ui -- --ignored --nocapture

# Real RocketMQ peers that we did not write (rocketmq-rust's broker, admin CLI
# and client) against a 3-node cluster serving the name-server protocol, then
# the same steps against 3 x rocketmq-namesrv-rust; the side-by-side table goes
# to stdout and docs/namesrv.md. The first run installs rocketmq-rust with
# `cargo install` into ~/.cache/openmessaging-kv/rocketmq-1.0.0 (ROCKETMQ_CACHE):
# 27 minutes on a quiet 2-core machine (name server 5, broker 5, admin CLI 17:
# it compiles RocksDB; 55 when the machine is shared), once; later runs skip
# it and take 3-4 minutes.
# Not part of `make test`.
test-rocketmq:
	scripts/rocketmq-install.sh
	$(CARGO) build --release -p kv-server
	scripts/test-rocketmq.sh

# The failure scenarios at full size: a node joins a cluster of 100,000 keys
# (the default run uses 20,000 to stay quick on a 2-core machine); then a
# follower catches up on a snapshot of 5 million keys within its memory
# budget, and two brokers register 65,000 topics each at once (ignored by
# `make test`; a release server, to load the keys in minutes rather than
# hours).
test-full:
	$(CARGO) build -p kv-server
	$(CARGO) build -p kv-client --bins
	KV_TEST_JOIN_KEYS=100000 $(CARGO) test -p integration-tests --test cluster
	$(CARGO) build --release -p kv-server
	KV_SERVER_BIN=$(abspath $(TARGET_DIR))/release/kv-server $(CARGO) test -p integration-tests \
	  --test snapshot_transfer --test namesrv -- --ignored --nocapture

# A 3-node cluster on loopback: client ports 7071-7073, peer ports
# 7171-7173, data under ./data/cluster/,
# in the background; `make cluster-stop` stops it.
CLUSTER_DIR ?= ./data/cluster
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),./target)
CLUSTER_PEERS = 1=http://127.0.0.1:7171,2=http://127.0.0.1:7172,3=http://127.0.0.1:7173

cluster:
	$(CARGO) build --release -p kv-server
	@mkdir -p $(CLUSTER_DIR)
	@for id in 1 2 3; do \
	  if [ -f $(CLUSTER_DIR)/n$$id.pid ] && kill -0 $$(cat $(CLUSTER_DIR)/n$$id.pid) 2>/dev/null; then \
	    echo "node $$id is already running (pid $$(cat $(CLUSTER_DIR)/n$$id.pid))"; continue; fi; \
	  nohup $(TARGET_DIR)/release/kv-server --node-id $$id --listen 127.0.0.1:707$$id \
	    --peer-listen 127.0.0.1:717$$id --namesrv-listen 127.0.0.1:987$$((id + 5)) \
	    --data-dir $(CLUSTER_DIR)/n$$id --peers $(CLUSTER_PEERS) \
	    > $(CLUSTER_DIR)/n$$id.log 2>&1 & echo $$! > $(CLUSTER_DIR)/n$$id.pid; \
	  echo "node $$id: http://127.0.0.1:707$$id, name server 127.0.0.1:987$$((id + 5)) (pid $$!, log $(CLUSTER_DIR)/n$$id.log)"; \
	done
	@for id in 1 2 3; do \
	  for try in $$(seq 60); do curl -sf 127.0.0.1:707$$id/readyz >/dev/null && break; sleep 0.5; done; \
	  printf 'node %s /readyz: ' $$id; curl -s 127.0.0.1:707$$id/readyz; echo; \
	done
	@echo "stop it with: make cluster-stop"

cluster-stop:
	@for id in 1 2 3; do \
	  if [ -f $(CLUSTER_DIR)/n$$id.pid ]; then \
	    kill $$(cat $(CLUSTER_DIR)/n$$id.pid) 2>/dev/null && echo "stopped node $$id"; \
	    rm -f $(CLUSTER_DIR)/n$$id.pid; fi; \
	done

# Fault injection (docs/reliability.md): CHAOS_HISTORIES histories of
# CHAOS_SECONDS s each against a 3-node cluster under a random schedule of
# kill -9, SIGSTOP, crash points and partitions, each checked for
# linearizability, then CHAOS_KILL_CYCLES kill -9 durability cycles.
# CHAOS_SEED replays a run (a failing history: CHAOS_SEED=<its seed>
# CHAOS_HISTORIES=1); failing histories are saved under target/chaos/.
CHAOS_HISTORIES ?= 20
CHAOS_SECONDS ?= 60
CHAOS_KILL_CYCLES ?= 1000

chaos:
	$(CARGO) build -p kv-server
	$(CARGO) build -p integration-tests --bin kv-chaos
	CHAOS_HISTORIES=$(CHAOS_HISTORIES) CHAOS_SECONDS=$(CHAOS_SECONDS) \
	  CHAOS_KILL_CYCLES=$(CHAOS_KILL_CYCLES) $(TARGET_DIR)/debug/kv-chaos

# Every fuzz target (the topic's, the raft log's, snapshots, HTTP parsers,
# the RocketMQ codec and JSON) at FUZZ_CASES cases each, 1,000,000 by
# default, in release mode; `make test` runs them at 2,000. A failure
# prints the seed that replays it (FUZZ_SEED). docs/fuzzing.md has the
# figures of a run.
FUZZ_CASES ?= 1000000
fuzz:
	FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release -p compaction --test fuzz -- --nocapture
	FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release -p schemas --test fuzz -- --nocapture
	FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release -p kv-server --lib fuzz:: -- --nocapture
