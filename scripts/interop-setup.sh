#!/usr/bin/env bash
# Sets up the interop peers the integration tests (tests/tests/interop.rs) run against:
#
# - a Python virtualenv in .interop/venv with interop/requirements.txt (`websockets`, and
#   `proxy.py` for the proxy tests in tests/tests/tls_proxy.rs);
# - interop/node/node_modules from interop/node/package-lock.json (`ws`).
#
# Idempotent: a second run with nothing changed does no network access and takes well
# under a second. Progress goes to stderr; stdout gets exactly two lines, ready for
# `eval` or `export`:
#
#   TETHER_INTEROP_PYTHON=<absolute path of the venv's python>
#   TETHER_INTEROP_NODE_DIR=<absolute path of interop/node>
#
# Needs python3 (3.10+, with the venv module; override with $PYTHON) and node + npm.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

# shellcheck source=scripts/venv.sh
source "${root}/scripts/venv.sh"

say() { echo "interop-setup: $*" >&2; }

# --- Python: .interop/venv ------------------------------------------------------------
venv="${root}/.interop/venv"
venv_python="${venv}/bin/python"
requirements="${root}/interop/requirements.txt"
stamp="${venv}/.requirements.txt"

ensure_venv "${venv}"
if ! cmp -s "${requirements}" "${stamp}" \
    || ! "${venv_python}" -c 'import websockets.asyncio.server, proxy' >/dev/null 2>&1; then
    say "pip install -r interop/requirements.txt"
    "${venv_python}" -m pip install --quiet --disable-pip-version-check -r "${requirements}" >&2
    cp "${requirements}" "${stamp}"
fi
say "python: $("${venv_python}" -c 'import websockets, sys; print(f"websockets {websockets.__version__} on Python {sys.version.split()[0]}")')"

# --- Node: interop/node/node_modules --------------------------------------------------
node_dir="${root}/interop/node"
command -v node >/dev/null 2>&1 || { say "node not found"; exit 1; }
command -v npm >/dev/null 2>&1 || { say "npm not found"; exit 1; }
# npm ci writes node_modules/.package-lock.json; it matches the lockfile after a clean
# install, so an unchanged lockfile means nothing to do.
installed="${node_dir}/node_modules/.package-lock.json"
if [[ ! -f "${installed}" || "${node_dir}/package-lock.json" -nt "${installed}" ]] \
    || ! (cd "${node_dir}" && node -e 'require("ws")') >/dev/null 2>&1; then
    say "npm ci in interop/node"
    (cd "${node_dir}" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
say "node: ws $(cd "${node_dir}" && node -p 'require("ws/package.json").version') on Node $(node --version)"

echo "TETHER_INTEROP_PYTHON=${venv_python}"
echo "TETHER_INTEROP_NODE_DIR=${node_dir}"
