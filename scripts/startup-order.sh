#!/usr/bin/env bash
# Writes scripts/startup-order.txt: the functions the release binary runs from exec until it
# idles, in the order they first run, for the linker to lay out together (build.rs,
# `--symbol-ordering-file`; issue 27, BENCHMARKS.md "idle resident memory").
#
# Usage: scripts/startup-order.sh [path/to/release/mecha]
#        scripts/startup-order.sh --check [path/to/release/mecha]
#
# --check writes nothing: it exits 1 when fewer than 90% of the listed names are functions of
# the binary (a stale list: the binary then idles at ~11 MiB instead of ~7). Check the binary
# `cargo build --release --bin mecha` makes: the one `cargo test` builds has other crate
# features (the dev-dependencies'), hence other symbol hashes, and never matches.
#
# Runs the binary under valgrind's callgrind twice: on its embedded default configuration,
# and with one component of each SQL/Redis store the benchmark starts (Redis, PostgreSQL,
# MySQL/MariaDB and SQLite: the services of scripts/services.sh must be up, or those stores'
# start-up code is simply missing from the list). Each run answers /v1.0/healthz, idles for
# 1.5 s, and is dumped. Rerun after upgrading dependencies: symbol names carry a hash of
# their crate, and names that no longer exist are skipped by the linker (memory, not
# correctness, is what a stale list costs).
set -euo pipefail
cd "$(dirname "$0")/.."
check=
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
bin=${1:-${CARGO_TARGET_DIR:-target}/release/mecha}
if [ -n "$check" ]; then
    listed=$(sort -u scripts/startup-order.txt | wc -l)
    found=$(nm --defined-only "$bin" | awk '{print $3}' | sort -u | comm -12 - <(sort -u scripts/startup-order.txt) | wc -l)
    echo "$found of $listed listed functions are in $bin"
    [ $((found * 100)) -ge $((listed * 90)) ] || { echo "stale: rerun scripts/startup-order.sh" >&2; exit 1; }
    exit 0
fi
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ports=(--http-port 13611 --grpc-port 13612 --metrics-port 13613)

component() { # name type metadata-lines
    printf 'apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n  metadata:\n%s\n' "$1" "$2" "$3" >"$work/res/$1.yaml"
}
mkdir -p "$work/res"
component mem state.in-memory '    - name: keyPrefix
      value: "order"'
component redis state.redis "    - name: redisHost
      value: \"${REDIS_HOST:-127.0.0.1:6379}\""
component pg state.postgresql "    - name: connectionString
      value: \"${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}\"
    - name: tableName
      value: \"startup_order\""
component mysql state.mysql "    - name: connectionString
      value: \"${MYSQL_DSN:-root:@tcp(127.0.0.1:3306)/test}\"
    - name: tableName
      value: \"startup_order\""
component sqlite state.sqlite "    - name: connectionString
      value: \"$work/order.db\""
echo '{}' >"$work/mecha.yaml"

run() { # out-file args...
    local out=$1
    shift
    (cd "$work" && exec valgrind --tool=callgrind --demangle=no --callgrind-out-file="$out.%p" \
        "$bin" "${ports[@]}" "$@" >"$out.log" 2>&1) &
    local pid=$!
    for _ in $(seq 1 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:13611/v1.0/healthz)" = 204 ] && break
        sleep 0.1
    done
    sleep 1.5
    callgrind_control -d "$pid" >/dev/null
    sleep 5
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
run "$work/default"
run "$work/stores" --resources-path "$work/res" --config "$work/mecha.yaml" --app-id order

nm --defined-only "$bin" | awk '{print $3}' >"$work/defined"
python3 - "$work" scripts/startup-order.txt <<'EOF'
import glob, re, sys
work, out = sys.argv[1], sys.argv[2]
# Only the binary's own functions (not the C library's, nor the loader's).
defined = set(open(f"{work}/defined").read().split())
names, seen = [], set()
for f in sorted(glob.glob(f"{work}/default.*.1")) + sorted(glob.glob(f"{work}/stores.*.1")):
    for line in open(f):
        m = re.match(r"c?fn=\(\d+\) (.+)$", line)
        if m:
            n = re.sub(r"'\d+$", "", m.group(1).strip())
            if n in defined and n not in seen:
                seen.add(n)
                names.append(n)
if len(names) < 500:
    sys.exit(f"only {len(names)} functions recorded: did the binary start?")
open(out, "w").write("\n".join(names) + "\n")
print(f"{out}: {len(names)} functions")
EOF
