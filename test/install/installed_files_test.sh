#!/usr/bin/env bash
# `meson install --destdir` installs exactly what an operator and a library user need: the four
# binaries, the client library (shared, static, header, pkg-config file), the man pages (when
# scdoc was found), the systemd unit naming the installed binary and configuration, and the
# example configuration; nothing else (no tests, no examples, no measuring tools). A second
# install keeps an edited configuration and puts the new example beside it.
#
# usage: installed_files_test.sh BUILD_DIR VERSION BINDIR LIBDIR INCLUDEDIR MANDIR SYSCONFDIR
#        UNITDIR MAN
#   directories absolute; UNITDIR "no" when no unit is installed; MAN "true" when the man
#   pages were built.  Environment: MESON.
set -euo pipefail

if [[ $# -ne 9 ]]; then
    echo "usage: $0 BUILD_DIR VERSION BINDIR LIBDIR INCLUDEDIR MANDIR SYSCONFDIR UNITDIR MAN" >&2
    exit 2
fi
build_dir=$1 version=$2 bindir=$3 libdir=$4 includedir=$5 mandir=$6 sysconfdir=$7 unitdir=$8
man=$9
read -ra meson_command <<<"${MESON:-meson}"

work=$(mktemp -d "${TMPDIR:-/tmp}/pubsubx-installed-files.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/destdir

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

install_into_dest() {
    if ! "${meson_command[@]}" install -C "$build_dir" --destdir "$dest" --no-rebuild \
        >"$work/install.log" 2>&1; then
        cat "$work/install.log" >&2
        fail "meson install into $dest failed"
    fi
}

echo "== meson install --destdir $dest"
install_into_dest

expected=(
    "$bindir/pubsubx-server" "$bindir/pubsubx-client" "$bindir/pubsubx-bench"
    "$bindir/pubsubx-passwd"
    "$libdir/libpubsubx-client.so" "$libdir/libpubsubx-client.so.0"
    "$libdir/libpubsubx-client.so.$version" "$libdir/libpubsubx-client.a"
    "$libdir/pkgconfig/pubsubx-client.pc"
    "$includedir/pubsubx/client.hpp"
    "$sysconfdir/pubsubx/pubsubx-server.toml"
)
if [[ $man == true ]]; then
    for page in pubsubx-server pubsubx-client pubsubx-bench pubsubx-passwd; do
        expected+=("$mandir/man1/$page.1")
    done
fi
if [[ $unitdir != no ]]; then
    expected+=("$unitdir/pubsubx-server.service")
fi
printf '%s\n' "${expected[@]}" | sort >"$work/expected"
(cd "$dest" && find . -type f -o -type l) | sed 's|^\.||' | sort >"$work/installed"
echo "installed:"
sed 's/^/  /' "$work/installed"
if ! diff -u "$work/expected" "$work/installed" >"$work/diff"; then
    cat "$work/diff" >&2
    fail "the installed files differ from the expected ones (- missing, + unexpected)"
fi

for program in pubsubx-server pubsubx-client pubsubx-bench pubsubx-passwd; do
    [[ -x $dest$bindir/$program ]] || fail "$bindir/$program is not executable"
done
if [[ $unitdir != no ]]; then
    unit=$dest$unitdir/pubsubx-server.service
    exec_start="ExecStart=$bindir/pubsubx-server --config $sysconfdir/pubsubx/pubsubx-server.toml"
    grep -qxF "$exec_start" "$unit" || fail "the unit has no line '$exec_start'"
    if grep -q '@[a-z]*@' "$unit"; then
        fail "the unit has an unreplaced variable: $(grep '@[a-z]*@' "$unit")"
    fi
fi
if [[ $man == true ]]; then
    for page in "$dest$mandir"/man1/*.1; do
        grep -q '^\.TH' "$page" || fail "$page is not a man page (no .TH line)"
    done
fi

echo "== a second install keeps an edited configuration"
config=$dest$sysconfdir/pubsubx/pubsubx-server.toml
echo 'port = 12345  # the operator changed this' >>"$config"
cp "$config" "$work/edited.toml"
install_into_dest
cmp -s "$config" "$work/edited.toml" || fail "meson install overwrote the edited $config"
[[ -f $config.new ]] || fail "no new example $config.new beside the kept configuration"
grep -q '^data-dir = ' "$config.new" || fail "$config.new is not the example"
echo "OK: meson install installs the expected ${#expected[@]} files and keeps an edited configuration"
