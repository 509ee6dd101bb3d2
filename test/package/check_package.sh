#!/usr/bin/env bash
# The Debian packages hold what they must and nothing else, lintian finds no error, the man
# pages render without warnings, and the packaged server runs.
#   1. scripts/package builds the .debs (unless --debs DIR names ones already built);
#   2. dpkg-deb -c of each: every required path is there, and every path is under the
#      directories that package may fill (no tests, examples or build paths);
#   3. dpkg-deb -I: the control fields, the conffile, the systemd maintainer scripts;
#   4. lintian --fail-on error over the .changes (its other findings are printed);
#   5. the man pages through groff with warnings on; the unit through systemd-analyze verify;
#   6. the pubsubx .deb extracted: its pubsubx-server --version and --help run.
# usage: test/package/check_package.sh [--debs DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."

debs=build-package
if [[ ${1:-} == --debs ]]; then
    debs=${2:?--debs needs a directory}
else
    scripts/package "$debs"
fi
source scripts/lib.sh
ensure_packages lintian man-db groff-base dpkg-dev

work=$(mktemp -d "${TMPDIR:-/tmp}/pubsubx-check-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
deb_of() { echo "$debs/${1}_${version}_$arch.deb"; }
for package in pubsubx libpubsubx-client0 libpubsubx-client-dev; do
    [[ -f $(deb_of "$package") ]] || fail "no $(deb_of "$package")"
done

# check_contents PACKAGE ALLOWED_REGEX REQUIRED_PATH...: dpkg-deb -c lists every required
# path, and each of its paths (directories included) matches ALLOWED_REGEX.
check_contents() {
    local package=$1 allowed=$2 path
    shift 2
    dpkg-deb -c "$(deb_of "$package")" | awk '{print $6}' | sed 's|^\./||; s|/$||' |
        grep -v '^$' >"$work/$package.list"
    echo "== dpkg-deb -c $package: $(wc -l <"$work/$package.list") paths"
    for path in "$@"; do
        grep -qxF "$path" "$work/$package.list" || fail "$package lacks $path"
    done
    if grep -vxE "$allowed" "$work/$package.list" >"$work/$package.stray"; then
        fail "$package holds paths it must not: $(tr '\n' ' ' <"$work/$package.stray")"
    fi
}
pages=()
for program in pubsubx-server pubsubx-client pubsubx-bench pubsubx-passwd; do
    pages+=("usr/share/man/man1/$program.1.gz")
done
check_contents pubsubx \
    '(usr|usr/bin|usr/bin/pubsubx-(server|client|bench|passwd)|usr/share|usr/share/man|usr/share/man/man1|usr/share/man/man1/pubsubx-(server|client|bench|passwd)\.1\.gz|usr/share/doc|usr/share/doc/pubsubx|usr/share/doc/pubsubx/(copyright|changelog\.gz)|lib|lib/systemd|lib/systemd/system|lib/systemd/system/pubsubx-server\.service|etc|etc/pubsubx|etc/pubsubx/pubsubx-server\.toml)' \
    usr/bin/pubsubx-server usr/bin/pubsubx-client usr/bin/pubsubx-bench usr/bin/pubsubx-passwd \
    "${pages[@]}" lib/systemd/system/pubsubx-server.service etc/pubsubx/pubsubx-server.toml
lib=usr/lib/$multiarch
check_contents libpubsubx-client0 \
    "(usr|usr/lib|$lib|$lib/libpubsubx-client\\.so\\.0(\\.[0-9.]+)?|usr/share|usr/share/doc|usr/share/doc/libpubsubx-client0|usr/share/doc/libpubsubx-client0/(copyright|changelog\\.gz))" \
    "$lib/libpubsubx-client.so.0" "$lib/libpubsubx-client.so.$version"
check_contents libpubsubx-client-dev \
    "(usr|usr/include|usr/include/pubsubx|usr/include/pubsubx/client\\.hpp|usr/lib|$lib|$lib/libpubsubx-client\\.(so|a)|$lib/pkgconfig|$lib/pkgconfig/pubsubx-client\\.pc|usr/share|usr/share/doc|usr/share/doc/libpubsubx-client-dev|usr/share/doc/libpubsubx-client-dev/(copyright|changelog\\.gz))" \
    usr/include/pubsubx/client.hpp "$lib/libpubsubx-client.so" "$lib/libpubsubx-client.a" \
    "$lib/pkgconfig/pubsubx-client.pc"

# field PACKAGE NAME: the control field NAME of PACKAGE's .deb.
field() { dpkg-deb -f "$(deb_of "$1")" "$2"; }
echo "== dpkg-deb -I: control fields"
for package in pubsubx libpubsubx-client0 libpubsubx-client-dev; do
    [[ $(field "$package" Package) == "$package" ]] || fail "$package: Package is $(field "$package" Package)"
    [[ $(field "$package" Version) == "$version" ]] || fail "$package: Version is not $version"
    [[ $(field "$package" Architecture) == "$arch" ]] || fail "$package: Architecture is not $arch"
    [[ $(field "$package" Maintainer) == *@* ]] || fail "$package: no Maintainer address"
    [[ -n $(field "$package" Description) ]] || fail "$package: no Description"
    [[ $(field "$package" Installed-Size) -gt 0 ]] || fail "$package: no Installed-Size"
    echo "$package $version $arch, Depends: $(field "$package" Depends)"
done
# depends_on PACKAGE DEPENDENCY: DEPENDENCY (a package name) is in PACKAGE's Depends.
depends_on() {
    field "$1" Depends | tr ',' '\n' | sed 's/^ *//; s/[ (].*//' | grep -qxF "$2" ||
        fail "$1 does not depend on $2 (Depends: $(field "$1" Depends))"
}
depends_on pubsubx libc6
depends_on pubsubx libssl3
depends_on pubsubx libsqlite3-0
depends_on libpubsubx-client0 libc6
depends_on libpubsubx-client-dev libpubsubx-client0
depends_on libpubsubx-client-dev libasio-dev
depends_on libpubsubx-client-dev libssl-dev
[[ $(field libpubsubx-client-dev Depends) == *"libpubsubx-client0 (= $version)"* ]] ||
    fail "libpubsubx-client-dev does not depend on libpubsubx-client0 (= $version)"
dpkg-deb -e "$(deb_of pubsubx)" "$work/control"
grep -qxF /etc/pubsubx/pubsubx-server.toml "$work/control/conffiles" ||
    fail "/etc/pubsubx/pubsubx-server.toml is not a conffile"
grep -q 'deb-systemd-helper' "$work/control/postinst" ||
    fail "pubsubx's postinst does not enable the unit (dh_installsystemd)"
grep -q 'pubsubx-server.service' "$work/control/postinst" ||
    fail "pubsubx's postinst does not name pubsubx-server.service"

echo "== lintian --fail-on error"
changes=$debs/pubsubx_${version}_$arch.changes
if ! lintian --fail-on error --display-level ">=pedantic" "$changes" >"$work/lintian.log" 2>&1; then
    cat "$work/lintian.log"
    fail "lintian reports errors for $changes"
fi
if [[ -s $work/lintian.log ]]; then
    sed 's/^/  /' "$work/lintian.log"
else
    echo "  (nothing to report)"
fi

root=$work/root
dpkg-deb -x "$(deb_of pubsubx)" "$root"
echo "== groff -ww over the man pages"
for page in "${pages[@]}"; do
    zcat "$root/$page" | groff -mandoc -ww -z -Tutf8 >"$work/groff.log" 2>&1 ||
        fail "groff failed on $page: $(cat "$work/groff.log")"
    [[ ! -s $work/groff.log ]] || fail "groff warns about $page: $(cat "$work/groff.log")"
    zcat "$root/$page" | MANWIDTH=80 man -l - >/dev/null 2>"$work/man.log" ||
        fail "man -l failed on $page: $(cat "$work/man.log")"
done
echo "  ${#pages[@]} pages, no warnings"

if command -v systemd-analyze >/dev/null; then
    echo "== systemd-analyze verify (the binary path pointed into the extracted package)"
    mkdir "$work/unit"
    sed "s|^ExecStart=/usr/bin/|ExecStart=$root/usr/bin/|" \
        "$root/lib/systemd/system/pubsubx-server.service" >"$work/unit/pubsubx-server.service"
    grep -q "^ExecStart=$root/usr/bin/pubsubx-server --config /etc/pubsubx/pubsubx-server.toml$" \
        "$work/unit/pubsubx-server.service" || fail "the unit's ExecStart is not the packaged server"
    if ! systemd-analyze verify --man=no "$work/unit/pubsubx-server.service" >"$work/verify.log" 2>&1; then
        cat "$work/verify.log" >&2
        fail "systemd-analyze verify rejects the unit"
    fi
    echo "  pubsubx-server.service verified"
fi

echo "== the packaged pubsubx-server runs"
server=$root/usr/bin/pubsubx-server
if ldd "$server" | grep -q 'not found'; then
    fail "the packaged server lacks a library: $(ldd "$server" | grep 'not found')"
fi
[[ $("$server" --version) == "pubsubx-server $version" ]] ||
    fail "pubsubx-server --version says: $("$server" --version)"
"$server" --help >"$work/help.txt" || fail "pubsubx-server --help failed"
grep -q -- '--data-dir' "$work/help.txt" || fail "pubsubx-server --help lists no --data-dir"
for program in pubsubx-client pubsubx-bench; do
    [[ $("$root/usr/bin/$program" --version) == *"$version"* ]] ||
        fail "$program --version does not say $version"
done
echo "OK: the three packages hold what they must, lintian finds no error, the server runs"
