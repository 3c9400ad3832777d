#!/usr/bin/env bash
# Runs tests/tests/openclaw.rs against the real OpenClaw gateway:
#
# 1. scripts/openclaw-setup.sh installs Node 26 and openclaw under .interop/openclaw/;
# 2. the fake OpenAI-compatible model (interop/openclaw/fake-model.mjs) starts on a free
#    loopback port;
# 3. one shared gateway starts on another, isolated in .interop/openclaw/run/shared (own
#    HOME, state, config and log; no channels, no Bonjour, no update checks, no
#    telemetry), configured from interop/openclaw/openclaw.json.in to use that model,
#    while the tests build;
# 4. TETHER_OPENCLAW=1 cargo test -p tether-tests --test openclaw (extra arguments go to
#    cargo test, e.g. `-- --nocapture` to see the real frames), bounded by
#    TETHER_OPENCLAW_TIMEOUT seconds (default 600);
# 5. docs/protocols.md's complete program (transport-tokio/examples/openclaw.rs) chats
#    with the shared gateway; it must print exactly the fake model's reply;
# 6. the gateway and the model are stopped (SIGTERM, then SIGKILL of their process
#    groups) on every path: success, failure, Ctrl-C.
#
# Some tests start gateways of their own (to connect during startup, to SIGSTOP and
# SIGTERM one and restart it). Takes about a minute after the first install: a tick
# interval is 30 s, and the tick test waits 40 s.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

say() { echo "interop-openclaw: $*" >&2; }

eval "$(./scripts/openclaw-setup.sh)"
export TETHER_OPENCLAW_NODE TETHER_OPENCLAW_MJS
node="${TETHER_OPENCLAW_NODE}"

run_dir="${root}/.interop/openclaw/run"
rm -rf "${run_dir}"
scratch="${run_dir}/shared"
mkdir -p "${scratch}/home" "${scratch}/state"

# --- process bookkeeping: everything started here leads its own process group ----------
pids=()
stop_group() { # pid name
    local pid="$1" name="$2"
    if kill -0 "${pid}" 2>/dev/null; then
        say "stopping the ${name} (pid ${pid})"
        kill -CONT "${pid}" 2>/dev/null || true
        kill -TERM "${pid}" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    fi
    kill -KILL -- "-${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
}
cleanup() {
    local entry
    for entry in "${pids[@]}"; do stop_group "${entry%%:*}" "${entry#*:}"; done
    pids=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (bounded) for a line matching $2 in file $1; prints the match.
wait_line() { # file pattern seconds what
    local file="$1" pattern="$2" seconds="$3" what="$4"
    for _ in $(seq $((seconds * 10))); do
        if grep -m1 -E "${pattern}" "${file}" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    say "${what}: nothing matching '${pattern}' in ${file} within ${seconds} s"
    tail -n 20 "${file}" >&2 || true
    return 1
}

# --- the fake model ---------------------------------------------------------------------
model_out="${run_dir}/fake-model.out"
setsid "${node}" interop/openclaw/fake-model.mjs --port 0 >"${model_out}" 2>&1 </dev/null &
pids+=("$!:fake model")
model_port="$(wait_line "${model_out}" '^READY [0-9]+$' 30 "the fake model" | cut -d' ' -f2)"
model_url="http://127.0.0.1:${model_port}/v1"
say "fake model at ${model_url}"

# --- the shared gateway -----------------------------------------------------------------
# A free port: bind port 0 on loopback and read what the kernel chose.
port="$("${node}" -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')"
token="tether-interop-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
sed -e "s#@MODEL_BASE_URL@#${model_url}#" -e "s#@LOG_FILE@#${scratch}/openclaw.log#" \
    interop/openclaw/openclaw.json.in >"${scratch}/openclaw.json"
log="${scratch}/gateway.log"

say "starting the gateway on 127.0.0.1:${port} (log: ${log})"
(
    cd "${scratch}"
    exec env \
        PATH="$(dirname "${node}"):${PATH}" \
        HOME="${scratch}/home" \
        OPENCLAW_STATE_DIR="${scratch}/state" \
        OPENCLAW_CONFIG_PATH="${scratch}/openclaw.json" \
        OPENCLAW_SKIP_CHANNELS=1 \
        OPENCLAW_DISABLE_BONJOUR=1 \
        OPENCLAW_NO_AUTO_UPDATE=1 \
        DO_NOT_TRACK=1 \
        OPENCLAW_GATEWAY_TOKEN="${token}" \
        setsid "${node}" "${TETHER_OPENCLAW_MJS}" gateway run \
        --allow-unconfigured --bind loopback --port "${port}" --auth token --token "${token}"
) >"${log}" 2>&1 </dev/null &
pids+=("$!:gateway")

# Build while the gateway starts (5 to 15 s); the tests wait for it to accept `connect`
# themselves (it answers UNAVAILABLE + 1013 until then, and they retry).
cargo test -p tether-tests --test openclaw --no-run >&2
cargo build -p tether-tokio --example openclaw >&2

export TETHER_OPENCLAW=1
export TETHER_OPENCLAW_URL="ws://127.0.0.1:${port}"
export TETHER_OPENCLAW_TOKEN="${token}"
export TETHER_OPENCLAW_MODEL_URL="${model_url}"
# The tests mostly wait on the gateway and its timers: run them all at once.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-16}"
status=0
started=${SECONDS}
# In the background, so that a signal to this script stops the run at once (bash runs
# traps only between commands, and `wait` is interruptible).
timeout --kill-after=10 "${TETHER_OPENCLAW_TIMEOUT:-600}" \
    cargo test -p tether-tests --test openclaw "$@" &
tests_pid=$!
pids=("${tests_pid}:test run" "${pids[@]}")
wait "${tests_pid}" || status=$?
pids=("${pids[@]:1}")
say "the suite took $((SECONDS - started)) s (exit ${status})"

if [[ ${status} -eq 0 ]]; then
    reply="The example streamed this: Ünïcode ✓, 🦀, done."
    message="TETHER-STREAM {\"reply\": \"${reply}\", \"chunk\": 3, \"delayMs\": 10}"
    say "running the example program against the gateway"
    printed="$(OPENCLAW_GATEWAY_TOKEN="${token}" timeout --kill-after=10 120 \
        cargo run -q -p tether-tokio --example openclaw -- \
        "${TETHER_OPENCLAW_URL}" "agent:main:tether-example-$$" "${message}")" || status=$?
    if [[ ${status} -eq 0 && "${printed}" != "${reply}" ]]; then
        say "the example printed '${printed}', not the model's '${reply}'"
        status=1
    fi
fi
if [[ ${status} -ne 0 ]]; then
    say "failed; the shared gateway's log tail:"
    tail -n 40 "${log}" >&2 || true
fi
exit "${status}"
