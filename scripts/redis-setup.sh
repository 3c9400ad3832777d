#!/usr/bin/env bash
# Sets up the Redis server the backplane tests (tests/tests/backplane.rs) and the hub
# benchmark's backplane row run against: Debian's own `redis-server`, unpacked into
# .redis/ without installing anything system-wide (no root needed once the package lists
# are there):
#
# - `apt-get download` fetches redis-tools (the server binary lives in it; redis-server
#   only adds a symlink and init scripts) and the libraries it links that a bare Debian 12
#   may lack (libjemalloc2, liblzf1, libatomic1, libssl3);
# - `dpkg -x` unpacks each into .redis/root;
# - .redis/bin/redis-server is a wrapper that runs the binary with LD_LIBRARY_PATH
#   pointing at the unpacked libraries.
#
# Idempotent: a second run with the wrapper in place and working does no network access.
# Progress goes to stderr; stdout gets exactly one line, ready for `eval` or `export`:
#
#   TETHER_REDIS_SERVER=<absolute path of .redis/bin/redis-server>
#
# Needs apt-get and dpkg (Debian or a derivative). When the package lists are empty (a
# fresh container) and we run as root, `apt-get update` is run first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

say() { echo "redis-setup: $*" >&2; }

dir="${root}/.redis"
wrapper="${dir}/bin/redis-server"
packages=(redis-tools libjemalloc2 liblzf1 libatomic1 libssl3)
stamp="${dir}/.packages"

works() { [[ -x "${wrapper}" ]] && "${wrapper}" --version >/dev/null 2>&1; }

if ! works || [[ "$(cat "${stamp}" 2>/dev/null)" != "${packages[*]}" ]]; then
    command -v apt-get >/dev/null 2>&1 || { say "apt-get not found (Debian needed)"; exit 1; }
    command -v dpkg >/dev/null 2>&1 || { say "dpkg not found (Debian needed)"; exit 1; }
    rm -rf "${dir}"
    mkdir -p "${dir}/debs" "${dir}/root" "${dir}/bin"
    download() { (cd "${dir}/debs" && apt-get download "${packages[@]}" >&2); }
    say "apt-get download ${packages[*]}"
    if ! download; then
        if [[ "$(id -u)" == "0" ]]; then
            say "download failed; apt-get update, then again"
            apt-get update >&2
            download
        else
            say "apt-get download failed; run 'apt-get update' as root first"
            exit 1
        fi
    fi
    for deb in "${dir}"/debs/*.deb; do
        dpkg -x "${deb}" "${dir}/root"
    done
    bin="${dir}/root/usr/bin/redis-check-rdb"
    [[ -x "${bin}" ]] || bin="${dir}/root/usr/bin/redis-server"
    [[ -x "${bin}" ]] || { say "no redis binary in the unpacked packages"; exit 1; }
    multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
    libs="${dir}/root/usr/lib/${multiarch}"
    # Redis picks its mode from argv[0]: it must end in redis-server, or it runs as
    # redis-check-rdb. `exec -a` names it so.
    cat >"${wrapper}" <<EOF
#!/usr/bin/env bash
# Debian's redis-server, unpacked by scripts/redis-setup.sh; its libraries come first.
export LD_LIBRARY_PATH="${libs}\${LD_LIBRARY_PATH:+:\${LD_LIBRARY_PATH}}"
exec -a redis-server "${bin}" "\$@"
EOF
    chmod +x "${wrapper}"
    rm -rf "${dir}/debs"
    works || { say "${wrapper} does not run"; "${wrapper}" --version >&2 || true; exit 1; }
    echo "${packages[*]}" >"${stamp}"
fi
say "$("${wrapper}" --version)"

echo "TETHER_REDIS_SERVER=${wrapper}"
