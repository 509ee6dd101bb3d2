# Shared by scripts/serve and scripts/test: installs what the build needs on Debian/Ubuntu
# and configures a build directory once.

# Debian packages the build and the test suite use.
PUBSUBX_PACKAGES=(g++ meson ninja-build pkg-config cmake libasio-dev libcli11-dev doctest-dev)

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
