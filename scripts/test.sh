#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration (core/tests/, including the
# state × input table of docs/state-machine.md), the interop tests against real Python
# (`websockets`) and Node (`ws`) servers (tests/tests/interop.rs), examples' builds and
# doc tests.
#
# The interop peers are set up first by scripts/interop-setup.sh (a venv in .interop/venv,
# node_modules in interop/node; idempotent, needs python3 and node/npm) and handed to the
# tests through TETHER_INTEROP_PYTHON and TETHER_INTEROP_NODE_DIR. With
# TETHER_SKIP_INTEROP=1 the setup is skipped and so are those tests. The servers are
# started and killed by the tests themselves, each on its own free port.
#
# Debian's redis-server for the hub backplane tests (tests/tests/backplane.rs) is
# unpacked into .redis/ by scripts/redis-setup.sh (idempotent; apt-get download, nothing
# installed system-wide) and handed to them through TETHER_REDIS_SERVER. With
# TETHER_SKIP_REDIS=1 the setup is skipped and so are those tests. Each test starts its
# own redis-server on a free loopback port and kills it at its end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${TETHER_SKIP_INTEROP:-}" != "1" ]]; then
    echo "==> scripts/interop-setup.sh" >&2
    peers="$(./scripts/interop-setup.sh)"
    while IFS='=' read -r name value; do
        case "${name}" in
            TETHER_INTEROP_PYTHON | TETHER_INTEROP_NODE_DIR) export "${name}=${value}" ;;
        esac
    done <<<"${peers}"
    echo "TETHER_INTEROP_PYTHON=${TETHER_INTEROP_PYTHON:?} TETHER_INTEROP_NODE_DIR=${TETHER_INTEROP_NODE_DIR:?}" >&2
fi

if [[ "${TETHER_SKIP_REDIS:-}" != "1" ]]; then
    echo "==> scripts/redis-setup.sh" >&2
    redis="$(./scripts/redis-setup.sh)"
    while IFS='=' read -r name value; do
        case "${name}" in
            TETHER_REDIS_SERVER) export "${name}=${value}" ;;
        esac
    done <<<"${redis}"
    echo "TETHER_REDIS_SERVER=${TETHER_REDIS_SERVER:?}" >&2
fi

cargo test --workspace "$@"
# The workspace builds the driver with TLS (tests/ enables `rustls`); its own tests also
# run without it, where `wss://` must be refused with the feature named.
cargo test -p tether-driver --lib "$@"
