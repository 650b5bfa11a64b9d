#!/usr/bin/env bash
# Runs every test of Mecha: unit, integration, conformance against real Redis, PostgreSQL and
# NATS JetStream, and the official-SDK compatibility tests. Starts (or installs, on Debian) the services it
# needs; no test is ever skipped because a service is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
prepare_test_environment
ensure_python_venv
ensure_openssl
ensure_node
ensure_promtool
ensure_mdbook

# A test that hangs fails the run after a bound instead of holding CI to its own limit.
bounded() { timeout --kill-after=30 "$@"; }

cargo build --bins
bounded 600 cargo test --workspace --doc
bounded 2400 cargo test --workspace --all-targets
# The book builds (its reference pages are checked against the code by tests/docs/reference.rs).
bounded 300 mdbook build docs --dest-dir "$CARGO_TARGET_DIR/book"

# The red-team suites once more, against the release binary as it ships (the run above used
# the debug build): the bounds the README's security model states hold for both.
cargo build --release --workspace --bins
# The release binary's start-up functions are laid out from scripts/startup-order.txt (idle
# memory, BENCHMARKS.md); a list the code has outgrown fails here: rerun scripts/startup-order.sh.
scripts/startup-order.sh --check "$CARGO_TARGET_DIR/release/mecha"
MECHA_BIN_UNDER_TEST="$CARGO_TARGET_DIR/release/mecha" \
    bounded 900 cargo test --test limits --test tenancy redteam_

# The official SDKs against the real binary.
MECHA_BIN="$CARGO_TARGET_DIR/debug/mecha" bounded 900 tests/compat/python/run.sh
MECHA_BIN="$CARGO_TARGET_DIR/debug/mecha" bounded 900 tests/compat/js/run.sh

# The benchmark in smoke mode: completes without errors (timings are not asserted).
bounded 900 ./scripts/bench.sh --quick --json "$CARGO_TARGET_DIR/mecha-bench-quick.json"
