#!/usr/bin/env bash
# Benchmarks Mecha against direct Redis, PostgreSQL, MySQL and SQLite clients on this machine and
# prints the results table (and writes mecha-bench.json). Starts the services it needs like test.sh.
#   scripts/bench.sh            full run (a few minutes)
#   scripts/bench.sh --quick    smoke run: completes without errors, timings not meaningful
#   scripts/bench.sh --help     every option
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
prepare_test_environment

# Both binaries: mecha-bench starts the release `mecha` next to it as a separate process.
cargo build --release --workspace --bins
exec "$CARGO_TARGET_DIR/release/mecha-bench" "$@"
