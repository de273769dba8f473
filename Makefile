# The two commands a fresh machine needs: `make run` and `make test`.
CARGO ?= cargo

.PHONY: run test fmt-check clippy unit bench-compaction bench-compare build

run:
	$(CARGO) run --release -p kv-server

test: fmt-check clippy unit

fmt-check:
	rustup component add rustfmt clippy >/dev/null 2>&1 || true
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The integration tests start the kv-server binary, which `cargo test` does
# not build for another package's tests: build it first.
unit:
	$(CARGO) build -p kv-server
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

build:
	$(CARGO) build --workspace --release
