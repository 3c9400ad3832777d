#!/usr/bin/env bash
# Sets up the Autobahn TestSuite runner that scripts/autobahn.sh drives (see
# docs/conformance.md): PyPI's `kosoku` (the Autobahn cases on Python 3) in a
# virtualenv at .interop/autobahn-venv.
#
# Idempotent: a second run with nothing changed does no network access and takes well
# under a second. Progress goes to stderr; stdout gets exactly one line, ready for `eval`
# or `export`:
#
#   TETHER_AUTOBAHN_VENV=<absolute path of the venv>
#
# Needs python3 (3.10+, with the venv module; override with $PYTHON). Installs from PyPI
# only, the pinned version below.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

# shellcheck source=scripts/venv.sh
source "${root}/scripts/venv.sh"

say() { echo "autobahn-setup: $*" >&2; }

# The pin: the cases, their expected results and the report format come with it, so a
# new version can change the counts in docs/conformance.md.
requirement="kosoku==0.1.0"

venv="${root}/.interop/autobahn-venv"
venv_python="${venv}/bin/python"
stamp="${venv}/.requirement"

ensure_venv "${venv}"
if [[ "$(cat "${stamp}" 2>/dev/null)" != "${requirement}" ]] \
    || ! "${venv_python}" -c 'from kosoku import run_fuzzingclient, run_fuzzingserver' >/dev/null 2>&1; then
    say "pip install ${requirement}"
    "${venv_python}" -m pip install --quiet --disable-pip-version-check "${requirement}" >&2
    echo "${requirement}" >"${stamp}"
fi
say "$("${venv_python}" -c "import importlib.metadata as m, sys; print('kosoku', m.version('kosoku'), 'on Python', sys.version.split()[0])")"

echo "TETHER_AUTOBAHN_VENV=${venv}"
