# The two commands a fresh machine needs: `make run` and `make test`.
CARGO ?= cargo

.PHONY: run test fmt-check clippy unit bench-compaction build

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

build:
	$(CARGO) build --workspace --release
