#!/usr/bin/env bash
# Runs every test of Mecha: unit, integration, conformance against real Redis, PostgreSQL and
# NATS JetStream, and the official-SDK compatibility tests. Starts (or installs, on Debian) the services it
# needs; no test is ever skipped because a service is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
prepare_test_environment
ensure_python_venv
ensure_node

cargo build --bins
cargo test --workspace --doc
cargo test --workspace --all-targets

# The official SDKs against the real binary.
MECHA_BIN="$CARGO_TARGET_DIR/debug/mecha" tests/compat/python/run.sh
MECHA_BIN="$CARGO_TARGET_DIR/debug/mecha" tests/compat/js/run.sh

# The benchmark in smoke mode: completes without errors (timings are not asserted).
./scripts/bench.sh --quick --json "$CARGO_TARGET_DIR/mecha-bench-quick.json"
