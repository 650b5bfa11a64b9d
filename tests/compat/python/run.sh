#!/usr/bin/env bash
# Python SDK compatibility suite: installs the official SDK (dapr==1.19.0) in a virtual
# environment and drives the mecha binary through DaprClient, over plain TCP and over TLS
# (test_dapr_sdk_tls.py, which needs the openssl command). Never skips: if the SDK
# cannot be installed, this fails.
#
#   tests/compat/python/run.sh
#
# Environment:
#   MECHA_VENV       virtual environment to create or reuse (default ~/.cache/mecha/venv)
#   MECHA_BIN        mecha binary to test (default: cargo build, then $CARGO_TARGET_DIR/debug/mecha)
#   PYTHON           interpreter used to create the venv (default python3)
set -euo pipefail

sdk_version=1.19.0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
venv=${MECHA_VENV:-$HOME/.cache/mecha/venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment $venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "dapr==$sdk_version"
"$venv/bin/python" - "$sdk_version" <<'PY'
import importlib.metadata, sys
got = importlib.metadata.version("dapr")
if got != sys.argv[1]:
    sys.exit(f"dapr {got} installed, expected {sys.argv[1]}")
PY

if [ -z "${MECHA_BIN:-}" ]; then
  (cd "$root" && cargo build --quiet --bin mecha)
  MECHA_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/mecha"
fi

command -v openssl >/dev/null || { echo "run.sh: the openssl command is required (apt-get install openssl)" >&2; exit 1; }

"$venv/bin/python" "$here/test_dapr_sdk.py" --mecha "$MECHA_BIN"
"$venv/bin/python" "$here/test_dapr_sdk_tls.py" --mecha "$MECHA_BIN"
