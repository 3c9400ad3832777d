#!/usr/bin/env bash
# Runs tests/tests/openclaw.rs against the real OpenClaw gateway:
#
# 1. scripts/openclaw-setup.sh installs Node 26 and openclaw under .interop/openclaw/;
# 2. one shared gateway starts on a free loopback port, isolated in
#    .interop/openclaw/run/shared (own HOME, state, config; no channels, no Bonjour, no
#    update checks, no telemetry), while the tests build;
# 3. TETHER_OPENCLAW=1 cargo test -p tether-tests --test openclaw (extra arguments go to
#    the test binary, e.g. `-- --nocapture` to see the real frames);
# 4. the gateway is stopped (SIGTERM, then SIGKILL of its process group) on every path.
#
# Some tests start gateways of their own (to connect during startup, to SIGTERM one).
# Takes about a minute after the first install (a tick interval is 30 s and the test
# waits 40 s).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

say() { echo "interop-openclaw: $*" >&2; }

eval "$(./scripts/openclaw-setup.sh)"
export TETHER_OPENCLAW_NODE TETHER_OPENCLAW_MJS

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="tether-interop-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
scratch="${root}/.interop/openclaw/run/shared"
rm -rf "${scratch}"
mkdir -p "${scratch}/home" "${scratch}/state"
log="${scratch}/gateway.log"

gateway_pid=""
stop_gateway() {
    [[ -n "${gateway_pid}" ]] || return 0
    if kill -0 "${gateway_pid}" 2>/dev/null; then
        say "stopping the gateway (pid ${gateway_pid})"
        kill -TERM "${gateway_pid}" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "${gateway_pid}" 2>/dev/null || break; sleep 0.1; done
    fi
    # The gateway leads its own process group (setsid): take its helpers down with it.
    kill -KILL -- "-${gateway_pid}" 2>/dev/null || true
    wait "${gateway_pid}" 2>/dev/null || true
    gateway_pid=""
}
trap stop_gateway EXIT
trap 'exit 130' INT TERM

say "starting the gateway on 127.0.0.1:${port} (log: ${log})"
(
    cd "${scratch}"
    exec env \
        PATH="$(dirname "${TETHER_OPENCLAW_NODE}"):${PATH}" \
        HOME="${scratch}/home" \
        OPENCLAW_STATE_DIR="${scratch}/state" \
        OPENCLAW_CONFIG_PATH="${scratch}/openclaw.json" \
        OPENCLAW_SKIP_CHANNELS=1 \
        OPENCLAW_DISABLE_BONJOUR=1 \
        OPENCLAW_NO_AUTO_UPDATE=1 \
        DO_NOT_TRACK=1 \
        OPENCLAW_GATEWAY_TOKEN="${token}" \
        setsid "${TETHER_OPENCLAW_NODE}" "${TETHER_OPENCLAW_MJS}" gateway run \
        --allow-unconfigured --bind loopback --port "${port}" --auth token --token "${token}"
) >"${log}" 2>&1 &
gateway_pid=$!

# Build while the gateway starts (about 15 s); the tests wait for it to accept `connect`
# themselves (it answers UNAVAILABLE + 1013 until then, and they retry).
cargo test -p tether-tests --test openclaw --no-run >&2

export TETHER_OPENCLAW=1
export TETHER_OPENCLAW_URL="ws://127.0.0.1:${port}"
export TETHER_OPENCLAW_TOKEN="${token}"
status=0
cargo test -p tether-tests --test openclaw "$@" || status=$?
if [[ ${status} -ne 0 ]]; then
    say "tests failed; the gateway's log tail:"
    tail -n 40 "${log}" >&2 || true
fi
exit "${status}"
