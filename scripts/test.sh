#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration (core/tests/, including the
# state × input table of docs/state-machine.md), examples' builds and doc tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Later: set up the interop peers here (a Python `websockets` server and a Node `ws`
# server in local virtualenv / node_modules), export their commands for the integration
# tests, and tear them down on exit.

cargo test --workspace "$@"
