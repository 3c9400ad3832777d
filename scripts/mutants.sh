#!/usr/bin/env bash
# Mutation testing of the core's policy modules: cargo-mutants mutates backoff, close,
# liveness, requests, streams, queue, writes and the session, and judges every mutant by
# the core's tests and the simulator's (its oracles, fault tests, properties and
# campaign tests). A mutant no test fails is a behaviour nothing proves.
#
#   scripts/mutants.sh [--shard K/N] [--module NAME]... [--outdir DIR] [-- ARGS...]
#
#   --shard K/N    run the K-th of N slices of the mutants (0-based), so that the whole
#                  run fits several sessions or machines; each shard reports on its own
#   --module NAME  only this module (backoff, close, liveness, requests, streams, queue,
#                  writes, session); repeatable; default all of them
#   --outdir DIR   where cargo-mutants writes (default .interop/mutants, one directory
#                  per shard); `outcomes.json` there lists every mutant and its fate
#   ARGS           passed to cargo-mutants as they are (e.g. --list, --jobs 2)
#
# cargo-mutants (pinned below) is installed with `cargo install` when missing. It builds
# in a scratch copy of the tree, so the first mutant pays for a cold build of the core
# and the simulator (about 3 minutes on the 2-core machine), each later one an
# incremental build and the tests. cargo-mutants times its unmutated baseline on the
# core's tests alone, so the timeout derived from it would be too tight for the core's
# and the simulator's tests together: a floor of 240 s is set. The summary at the end
# counts caught, missed, unviable and timed-out mutants per module; the exit status is
# cargo-mutants' own (0: every viable mutant caught, 2: some missed, 3: some timed out).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

say() { echo "mutants: $*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2; exit 2; }

version=27.1.0
shard="" outdir="${root}/.interop/mutants" modules=() extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --shard) shard="${2:-}"; shift ;;
        --module) modules+=("${2:-}"); shift ;;
        --outdir) outdir="${2:-}"; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) usage ;;
        *) say "unknown argument $1"; usage ;;
    esac
    shift
done
[[ "${#modules[@]}" -gt 0 ]] || modules=(backoff close liveness requests streams queue writes session)

files=()
for m in "${modules[@]}"; do
    case "${m}" in
        session) files+=(-f 'core/src/session/*.rs') ;;
        backoff|close|liveness|requests|streams|queue|writes) files+=(-f "core/src/${m}.rs") ;;
        *) say "unknown module ${m}"; usage ;;
    esac
done

if ! cargo mutants --version 2>/dev/null | grep -q "${version}"; then
    say "installing cargo-mutants ${version}"
    cargo install --locked --quiet cargo-mutants --version "${version}"
fi

shard_flags=()
out="${outdir}/all"
if [[ -n "${shard}" ]]; then
    [[ "${shard}" =~ ^[0-9]+/[0-9]+$ ]] || { say "--shard K/N"; exit 2; }
    shard_flags=(--shard "${shard}" --sharding slice)
    out="${outdir}/shard-${shard%/*}-of-${shard#*/}"
fi
mkdir -p "${out}"

start=$(date +%s)
status=0
cargo mutants -p tether-core "${files[@]}" \
    --test-package tether-core --test-package tether-sim \
    --no-shuffle --timeout-multiplier 3 --minimum-test-timeout 240 --output "${out}" \
    "${shard_flags[@]}" "${extra[@]}" || status=$?
say "took $(( $(date +%s) - start )) s; outcomes in ${out}/mutants.out"

# Per-module counts, from cargo-mutants' own record of every mutant.
if [[ -f "${out}/mutants.out/outcomes.json" ]]; then
    python3 - "${out}/mutants.out/outcomes.json" <<'PY'
import collections, json, sys
outcomes = json.load(open(sys.argv[1]))["outcomes"]
names = {"CaughtMutant": "caught", "MissedMutant": "missed", "Unviable": "unviable", "Timeout": "timeout"}
table = collections.defaultdict(collections.Counter)
missed = []
for o in outcomes:
    scenario = o.get("scenario")
    if not isinstance(scenario, dict) or "Mutant" not in scenario:
        continue
    m = scenario["Mutant"]
    path = m["file"]
    module = "session" if "/session/" in path else path.rsplit("/", 1)[-1].removesuffix(".rs")
    kind = names.get(o["summary"], o["summary"])
    table[module][kind] += 1
    if kind == "missed":
        missed.append(f'{path}:{m["span"]["start"]["line"]}: {m["name"]}')
print(f'{"module":<10} {"caught":>7} {"missed":>7} {"unviable":>9} {"timeout":>8}')
for module in sorted(table):
    c = table[module]
    print(f'{module:<10} {c["caught"]:>7} {c["missed"]:>7} {c["unviable"]:>9} {c["timeout"]:>8}')
for line in missed:
    print(f"MISSED {line}")
PY
fi
exit "${status}"
