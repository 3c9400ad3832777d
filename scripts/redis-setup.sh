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
# Needs apt-get and dpkg (Debian or a derivative), not root. When the system's package
# lists do not know the packages (a fresh container never updated), the lists are
# fetched into .redis/apt instead (`apt-get update` with a private state directory: no
# root, nothing changed for the rest of the system) and the download retried from them.
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
    rm -rf "${dir}/debs" "${dir}/root" "${dir}/bin"
    mkdir -p "${dir}/debs" "${dir}/root" "${dir}/bin"
    download() { (cd "${dir}/debs" && apt-get "$@" download "${packages[@]}" >&2); }
    say "apt-get download ${packages[*]}"
    if ! download; then
        say "not in the system's package lists; fetching lists into .redis/apt"
        apt="${dir}/apt"
        mkdir -p "${apt}/lists/partial" "${apt}/cache/archives/partial"
        private=(-o "Dir::State::Lists=${apt}/lists" -o "Dir::Cache=${apt}/cache" -o Debug::NoLocking=1)
        apt-get "${private[@]}" update >&2
        download "${private[@]}"
    fi
    for deb in "${dir}"/debs/*.deb; do
        dpkg -x "${deb}" "${dir}/root"
    done
    bin="${dir}/root/usr/bin/redis-check-rdb"
    [[ -x "${bin}" ]] || bin="${dir}/root/usr/bin/redis-server"
    [[ -x "${bin}" ]] || { say "no redis binary in the unpacked packages"; exit 1; }
    # The multiarch directory the libraries unpacked into (x86_64-linux-gnu,
    # aarch64-linux-gnu, …): whichever the packages brought.
    libs="$(find "${dir}/root/usr/lib" -mindepth 1 -maxdepth 1 -type d -name '*-linux-gnu*' | head -n 1)"
    [[ -n "${libs}" ]] || { say "no library directory in the unpacked packages"; exit 1; }
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
