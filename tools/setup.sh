# tools/setup.sh — sourced by tools/test, tools/demo and tools/bench: installs what a
# fresh Debian 12 machine is missing (as root, with apt) and builds verge with meson.
#
#   setup_packages PKG...          install the packages that are not installed yet
#   setup_build DIR MESON_OPTION... configure (or reconfigure) DIR and compile verge there

# The packages every build of verge needs.
VERGE_BUILD_PACKAGES=(meson ninja-build pkg-config gcc libev-dev libnghttp2-dev libssl-dev
                      libyajl-dev libluajit2-5.1-dev)

setup_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    echo "setup: installing ${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

setup_build() {
    local dir=$1
    shift
    local log
    log=$(mktemp)
    if [ -d "$dir/meson-private" ]; then
        meson setup --reconfigure "$dir" "$@" >"$log" 2>&1 || { cat "$log"; rm -f "$log"; return 1; }
    else
        meson setup "$dir" "$@" >"$log" 2>&1 || { cat "$log"; rm -f "$log"; return 1; }
    fi
    meson compile -C "$dir" >"$log" 2>&1 || { cat "$log"; rm -f "$log"; return 1; }
    rm -f "$log"
}
