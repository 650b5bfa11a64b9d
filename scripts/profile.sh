#!/usr/bin/env bash
# Where one process's CPU goes, by part: samples its threads with `perf record` for SECONDS
# (while you load it, e.g. with scripts/bench.sh --only ... or wrk/h2load) and prints the
# share of each part (kernel, allocator, memmove, HTTP/2 and gRPC, actix, Mecha, ...).
#   scripts/profile.sh PID [SECONDS]         (needs Debian's linux-perf)
# The release binary keeps its symbols, so no special build is needed; without frame
# pointers only the leaf function is reliable, which is what the parts are made of.
set -euo pipefail
pid=${1:?usage: scripts/profile.sh PID [SECONDS]}
secs=${2:-5}
command -v perf >/dev/null || { echo "perf not found: apt-get install linux-perf" >&2; exit 1; }
data=$(mktemp /tmp/mecha-profile.XXXXXX)
trap 'rm -f "$data"' EXIT
perf record -q -F 1999 -p "$pid" -o "$data" -- sleep "$secs" >/dev/null 2>&1
perf report -i "$data" --no-children --sort dso,symbol -g none --stdio 2>/dev/null >"$data.txt"
trap 'rm -f "$data" "$data.txt"' EXIT
python3 - "$data.txt" <<'PY'
import re, sys
# A symbol belongs to the crate its path starts with (for `<A as B>::f`, the crate of A).
def crate(sym):
    m = re.match(r"[<&\s]*(?:mut |dyn |core::pin::Pin<alloc::boxed::Box<dyn )?([a-z_][a-z0-9_]*)::", sym)
    return m.group(1) if m else ""
groups = {
    "HTTP/2 and gRPC (h2, hyper, tonic, prost, http)": {"h2", "hyper", "hyper_util", "tonic", "tonic_prost", "prost", "http", "http_body", "http_body_util", "tower", "tower_service", "tower_layer"},
    "HTTP/1 (actix-web, actix-http)": {"actix_web", "actix_http", "actix_server", "actix_router", "actix_service", "actix_codec"},
    "actix actors (mailboxes, envelopes)": {"actix", "actix_rt"},
    "tokio (scheduler, I/O, timers)": {"tokio", "mio", "tokio_util"},
    "metrics and tracing": {"metrics", "metrics_util", "metrics_exporter_prometheus", "tracing", "tracing_core", "tracing_subscriber", "quanta", "sketches_ddsketch"},
    "Redis client (redis-rs, combine)": {"redis", "combine"},
    "PostgreSQL client (tokio-postgres)": {"tokio_postgres", "postgres_protocol", "postgres_types"},
    "Mecha": {"mecha"},
}
parts = [
    ("kernel (sockets, scheduling, timers)", lambda d, s: d.startswith("[kernel") or d == "[vdso]"),
    ("memmove / memcpy / memset", lambda d, s: "memmove" in s or "memcpy" in s or "memset" in s),
    ("allocator (jemalloc or glibc malloc)", lambda d, s: "rjem" in s or s.startswith("je_") or re.search(r"^(malloc|free|cfree\S*|realloc|_int_\w+|malloc_consolidate|unlink_chunk\S*|tcache\S*)$", s) is not None),
] + [(name, (lambda names: lambda d, s: crate(s) in names)(names)) for name, names in groups.items()] + [
    ("libc, other", lambda d, s: "libc" in d),
]
totals = {name: 0.0 for name, _ in parts}
other = 0.0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
    if not m:
        continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
    for name, test in parts:
        if test(dso, sym):
            totals[name] += pct
            break
    else:
        other += pct
print("| part | share of the process CPU |")
print("| --- | ---: |")
for name, _ in parts:
    print(f"| {name} | {totals[name]:.1f} % |")
print(f"| other (std, serde, hashing, ...) | {other:.1f} % |")
PY
