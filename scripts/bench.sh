#!/usr/bin/env bash
# Benchmarks Mecha against direct Redis, PostgreSQL, MySQL and SQLite clients on this machine and
# prints the results table (and writes mecha-bench.json). Starts the services it needs like test.sh,
# and installs the load generators (wrk, h2load) when missing.
#   scripts/bench.sh            full run (a few minutes)
#   scripts/bench.sh --quick    smoke run: completes without errors, timings not meaningful
#   scripts/bench.sh --help     every option
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
prepare_test_environment
ensure_load_generators

# Every binary: mecha-bench starts the release `mecha` next to it as a separate process.
cargo build --release --workspace --bins
quick=()
for arg in "$@"; do
  case "$arg" in
    --help | -h) exec "$CARGO_TARGET_DIR/release/mecha-bench" "$@" ;;
    --quick) quick=(--quick) ;;
  esac
done
"$CARGO_TARGET_DIR/release/mecha-bench" "$@"
# Then the cost of a query, emulated (in-memory, Redis) against PostgreSQL's native one.
exec "$CARGO_TARGET_DIR/release/mecha-query-bench" "${quick[@]}"
