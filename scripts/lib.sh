# Shared by scripts/serve and scripts/test: installs what the build needs on Debian/Ubuntu
# and configures a build directory once.

# Debian packages the build and the test suite use.
PUBSUBX_PACKAGES=(g++ meson ninja-build pkg-config cmake libasio-dev libcli11-dev doctest-dev
    libsqlite3-dev libssl-dev libnats-dev nats-server openssl
    libcpp-httplib-dev python3-prometheus-client chromium chromium-driver scdoc)

ensure_packages() {
    local missing=() package
    for package in "${PUBSUBX_PACKAGES[@]}" "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "Installing missing packages: ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "Missing packages: ${missing[*]}" >&2
        echo "Install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
}

# configure_build DIR [meson options...]: sets DIR up unless it exists already.
configure_build() {
    local dir=$1
    shift
    if [[ ! -f $dir/build.ninja ]]; then
        meson setup "$dir" --wrap-mode=nodownload "$@"
    fi
}

# private_harness BUILD_DIR: prints the directory of a copy of the team's load harness
# (../shared/tools/xbench: run_peers.sh, build.sh, xbench.cpp) in BUILD_DIR/xbench-harness,
# refreshed when shared/ has a newer file. run_peers.sh builds its xbench binary next to
# itself, and shared/ is not ours to write into.
private_harness() {
    local from=../shared/tools/xbench to=$1/xbench-harness file
    if [[ ! -f $from/run_peers.sh || ! -f $from/xbench.cpp ]]; then
        echo "$from not found (the team's shared/ sits beside the checkout)" >&2
        return 1
    fi
    mkdir -p "$to"
    for file in run_peers.sh build.sh xbench.cpp README.md; do
        if [[ ! -f $to/$file || $from/$file -nt $to/$file ]]; then
            rm -f "$to/$file"
            cp "$from/$file" "$to/$file"
        fi
    done
    echo "$to"
}
