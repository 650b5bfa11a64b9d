#!/usr/bin/env bash
# JavaScript SDK compatibility suite: installs the official SDK (@dapr/dapr 3.18.0, pinned in
# package-lock.json) into tests/compat/js/node_modules and drives the mecha binary through
# DaprClient, once over HTTP and once over gRPC. Never skips: if node/npm are missing or the SDK
# cannot be installed, this fails.
#
#   tests/compat/js/run.sh
#
# Environment:
#   MECHA_BIN         mecha binary to test (default: cargo build, then $CARGO_TARGET_DIR/debug/mecha)
#   CARGO_TARGET_DIR  default ~/.cache/mecha/target (as scripts/test.sh)
#   NODE, NPM         node and npm executables (default: node, npm from PATH)
#   MECHA_JS_REINSTALL=1  run `npm ci` even when node_modules matches package-lock.json
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
node=${NODE:-node}
npm=${NPM:-npm}

command -v "$node" >/dev/null || { echo "error: $node not found (Node.js >= 18 is required)" >&2; exit 1; }
command -v "$npm" >/dev/null || { echo "error: $npm not found" >&2; exit 1; }
node_major=$("$node" -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "error: Node.js $("$node" --version) is too old; @dapr/dapr 3.18.0 needs >= 18" >&2
  exit 1
fi

# Install exactly what package-lock.json pins. `npm ci` wipes node_modules, so it only runs
# when the lock file changed since the last install (a stamp holds the lock's hash).
# --ignore-scripts: the only install script in the tree is protobufjs' postinstall, a check of
# its optional CLI that the SDK does not use.
cd "$here"
stamp=node_modules/.mecha-lock-hash
if [ -f package-lock.json ]; then
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ "${MECHA_JS_REINSTALL:-}" = 1 ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "npm ci (@dapr/dapr from package-lock.json)"
    "$npm" ci --no-audit --no-fund --prefer-offline --ignore-scripts
    echo "$want" > "$stamp"
  fi
else
  echo "no package-lock.json: npm install"
  "$npm" install --no-audit --no-fund --ignore-scripts
fi

if [ -z "${MECHA_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mecha/target}"
  (cd "$root" && cargo build --quiet --bin mecha)
  MECHA_BIN="$CARGO_TARGET_DIR/debug/mecha"
fi

exec "$node" "$here/compat.mjs" --mecha "$MECHA_BIN"
