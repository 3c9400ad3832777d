#!/usr/bin/env bash
# Runs the Autobahn TestSuite cases (PyPI's kosoku, see docs/conformance.md) against
# tether's echo client and echo server and against the same two written directly on
# async-tungstenite (the baseline), then compares them case by case.
#
#   scripts/autobahn.sh [--all [--default-limit]] [--only client|server] [--markdown]
#                       [--report-only] [--profile release|dev] [--outdir DIR]
#
#   --all          include the 9.x cases (messages up to 16 MiB, 1000-message runs); the
#                  tether server then runs with max_inbound_frame = 16 MiB, the suite's
#                  largest message
#   --default-limit  with --all, keep the tether server's default max_inbound_frame
#                  (1 MiB) to see what 9.x does at the default
#   --only ROLE    run only the client or only the server half
#   --markdown     print the counts as the Markdown tables of docs/conformance.md
#   --report-only  print the comparison and exit 0 whatever it says
#   --profile P    cargo profile of the peers (default dev, the target dir `cargo test`
#                  already warms; release gives the same verdicts in the same time,
#                  since the cases' own waits dominate, after a longer first build)
#   --outdir DIR   where the reports go (default .interop/autobahn); one directory per
#                  peer, with kosoku's index.html for reading the cases one by one, and
#                  each peer's log (how every session or connection ended)
#
# Always excluded: 12.x and 13.x (permessage-deflate: the codec has no compression).
#
# Exit status: 0 when tether's result is as good as the baseline's on every case run
# (client and server), 1 otherwise or when a part failed; with --report-only always 0.
# Every process this script starts is killed on every path (trap), and every wait is
# bounded: TETHER_AUTOBAHN_TIMEOUT seconds per part (default 300, 900 with --all).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

say() { echo "autobahn: $*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2; exit 2; }

all=0 default_limit=0 markdown=0 report_only=0 only="" profile=dev outdir="${root}/.interop/autobahn"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --all) all=1 ;;
        --default-limit) default_limit=1 ;;
        --markdown) markdown=1 ;;
        --report-only) report_only=1 ;;
        --only) only="${2:-}"; shift ;;
        --profile) profile="${2:-}"; shift ;;
        --outdir) outdir="${2:-}"; shift ;;
        -h|--help) usage ;;
        *) say "unknown argument $1"; usage ;;
    esac
    shift
done
case "${only}" in ""|client|server) ;; *) say "--only client|server"; exit 2 ;; esac
case "${profile}" in release|dev) ;; *) say "--profile release|dev"; exit 2 ;; esac
[[ "${outdir}" = /* ]] || outdir="${root}/${outdir}"

part_timeout="${TETHER_AUTOBAHN_TIMEOUT:-$((all ? 900 : 300))}"
# The longest 9.x case (9.1.6, one 16 MiB text message) takes well under a second here;
# a minute still ends a hung session without ending the run.
case_timeout=60
excludes=(-x '12.*' -x '13.*')
[[ "${all}" -eq 1 ]] || excludes+=(-x '9.*')
server_flags=()
# The suite's largest message is 16 MiB (9.1.6, 9.2.6); the tether client's default
# limit is already 16 MiB, the server's is 1 MiB.
[[ "${all}" -eq 0 || "${default_limit}" -eq 1 ]] || server_flags+=(--max-inbound-frame $((16 << 20)))

# --- processes: every one started is remembered and killed on exit -------------------
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "${pid}" 2>/dev/null || true
    done
    # Give them a moment to go, then make sure.
    for _ in $(seq 20); do
        local alive=0
        for pid in "${pids[@]}"; do
            kill -0 "${pid}" 2>/dev/null && alive=1
        done
        [[ "${alive}" -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        kill -9 "${pid}" 2>/dev/null || true
    done
    [[ -z "${work:-}" ]] || rm -rf "${work}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits up to $2 seconds for process $1; kills it if it is still running. Sets
# `waited_status` to its exit status (124 on a timeout).
waited_status=0
wait_bounded() {
    local pid="$1" deadline=$((SECONDS + $2))
    while kill -0 "${pid}" 2>/dev/null; do
        if [[ ${SECONDS} -ge ${deadline} ]]; then
            say "pid ${pid} still running after $2 s: killing it"
            kill "${pid}" 2>/dev/null || true
            wait "${pid}" 2>/dev/null || true
            waited_status=124
            return
        fi
        sleep 0.1
    done
    waited_status=0
    wait "${pid}" 2>/dev/null || waited_status=$?
}

# Waits up to $2 seconds for file $1 to be non-empty while process $3 runs.
wait_for_file() {
    local file="$1" deadline=$((SECONDS + $2)) pid="$3"
    while [[ ! -s "${file}" ]]; do
        kill -0 "${pid}" 2>/dev/null || return 1
        [[ ${SECONDS} -lt ${deadline} ]] || return 1
        sleep 0.1
    done
}

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- setup and build ------------------------------------------------------------------
t0="$(now)"
eval "$(scripts/autobahn-setup.sh)"
python="${TETHER_AUTOBAHN_VENV}/bin/python"
say "setup took $(took "${t0}") s"

t0="$(now)"
cargo_profile_flag=()
profile_dir=debug
if [[ "${profile}" == release ]]; then cargo_profile_flag=(--release); profile_dir=release; fi
# In the background and waited for, so that a signal reaches the trap at once (bash runs
# traps only after a foreground command ends).
cargo build -q "${cargo_profile_flag[@]}" -p tether-conformance --bins >&2 &
pids+=($!)
built=0
wait $! || built=$?
if [[ "${built}" -ne 0 ]]; then say "build failed"; exit 1; fi
bin="${CARGO_TARGET_DIR:-${root}/target}/${profile_dir}"
say "build (${profile}) took $(took "${t0}") s"

work="$(mktemp -d)"
mkdir -p "${outdir}"
failed=0
timings=()

# --- the client half: the fuzzing server against each echo client --------------------
run_client() {
    local peer="$1" dir="${outdir}/client-$1" port_file="${work}/client-$1.port" t0
    t0="$(now)"
    rm -rf "${dir}"
    "${python}" scripts/autobahn.py fuzzingserver --outdir "${dir}" --port-file "${port_file}" \
        --timeout "${part_timeout}" "${excludes[@]}" 2>"${work}/fuzzingserver-$1.log" &
    local server=$!
    pids+=("${server}")
    if ! wait_for_file "${port_file}" 30 "${server}"; then
        say "client-${peer}: the fuzzing server did not start"
        cat "${work}/fuzzingserver-$1.log" >&2
        failed=1
        return
    fi
    "${bin}/echo-client-${peer}" "ws://127.0.0.1:$(cat "${port_file}")" --agent "${peer}" \
        --case-timeout "${case_timeout}" --verbose >"${outdir}/client-${peer}.log" 2>&1 &
    local client=$!
    pids+=("${client}")
    wait_bounded "${server}" "$((part_timeout + 10))"
    local server_status="${waited_status}"
    wait_bounded "${client}" 10
    if [[ "${server_status}" -ne 0 ]]; then
        say "client-${peer}: the fuzzing server failed (${server_status}); see ${outdir}/client-${peer}.log"
        cat "${work}/fuzzingserver-$1.log" >&2
        failed=1
    fi
    timings+=("client-${peer}: $(took "${t0}") s")
    say "client-${peer} took $(took "${t0}") s"
}

# --- the server half: the fuzzing client against each echo server --------------------
run_server() {
    local peer="$1" dir="${outdir}/server-$1" url_file="${work}/server-$1.url" t0 flags=()
    t0="$(now)"
    rm -rf "${dir}"
    [[ "${peer}" == tether ]] && flags=("${server_flags[@]}")
    "${bin}/echo-server-${peer}" "${flags[@]}" --verbose >"${url_file}" 2>"${outdir}/server-${peer}.log" &
    local server=$!
    pids+=("${server}")
    if ! wait_for_file "${url_file}" 30 "${server}"; then
        say "server-${peer}: the echo server did not start"
        cat "${outdir}/server-${peer}.log" >&2
        failed=1
        return
    fi
    "${python}" scripts/autobahn.py fuzzingclient --outdir "${dir}" --url "$(head -n 1 "${url_file}")" \
        --timeout "${part_timeout}" "${excludes[@]}" 2>"${work}/fuzzingclient-$1.log" &
    local client=$!
    pids+=("${client}")
    wait_bounded "${client}" "$((part_timeout + 10))"
    if [[ "${waited_status}" -ne 0 ]]; then
        say "server-${peer}: the fuzzing client failed (${waited_status})"
        cat "${work}/fuzzingclient-$1.log" >&2
        failed=1
    fi
    kill "${server}" 2>/dev/null || true
    wait_bounded "${server}" 10
    timings+=("server-${peer}: $(took "${t0}") s")
    say "server-${peer} took $(took "${t0}") s"
}

peers=()
if [[ "${only}" != server ]]; then
    run_client tether
    run_client raw
    peers+=("client-tether=${outdir}/client-tether" "client-raw=${outdir}/client-raw")
fi
if [[ "${only}" != client ]]; then
    run_server tether
    run_server raw
    peers+=("server-tether=${outdir}/server-tether" "server-raw=${outdir}/server-raw")
fi

# --- the comparison -------------------------------------------------------------------
report_flags=()
[[ "${markdown}" -eq 0 ]] || report_flags+=(--markdown)
compared=0
"${bin}/autobahn-report" "${report_flags[@]}" "${peers[@]}" || compared=$?
say "cases: all but 12.x, 13.x$([[ "${all}" -eq 1 ]] || echo ", 9.x"); reports in ${outdir}"
for t in "${timings[@]}"; do say "  ${t}"; done

if [[ "${report_only}" -eq 1 ]]; then
    exit 0
fi
if [[ "${failed}" -ne 0 || "${compared}" -ne 0 ]]; then
    exit 1
fi
exit 0
