# Sourced by the setup scripts: `ensure_venv DIR` makes DIR a working Python venv (made
# anew with ${PYTHON:-python3} if it is missing or broken). The caller defines `say`.
ensure_venv() {
    local venv="$1" python="${PYTHON:-python3}"
    if ! "${venv}/bin/python" -c 'import sys' >/dev/null 2>&1; then
        command -v "${python}" >/dev/null 2>&1 || { say "${python} not found (set \$PYTHON)"; exit 1; }
        say "creating ${venv} with $("${python}" --version 2>&1)"
        rm -rf "${venv}"
        mkdir -p "$(dirname "${venv}")"
        "${python}" -m venv "${venv}"
    fi
}
