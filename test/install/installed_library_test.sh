#!/usr/bin/env bash
# The installed client library stands alone: `meson install` into a temporary destination,
# then examples/logger.cpp compiled with nothing but pkg-config's flags for pubsubx-client (no
# path into the source or build tree), linked against the installed shared library and run
# against the built broker while the built pubsubx-client publishes three messages.
#
# usage: installed_library_test.sh BUILD_DIR LOGGER_CPP PREFIX LIBDIR INCLUDEDIR SANITIZE
#   LIBDIR and INCLUDEDIR absolute (meson's prefix / libdir); SANITIZE is b_sanitize ("none",
#   "address,undefined", ...): the installed library carries it, so the program needs it too.
# Environment: MESON, CXX (the build's compiler command), PUBSUBX_SERVER, PUBSUBX_CLIENT.
set -euo pipefail

if [[ $# -ne 6 ]]; then
    echo "usage: $0 BUILD_DIR LOGGER_CPP PREFIX LIBDIR INCLUDEDIR SANITIZE" >&2
    exit 2
fi
build_dir=$1 logger_source=$2 prefix=$3 libdir=$4 includedir=$5 sanitize=$6
source_dir=$(cd "$(dirname "$logger_source")/.." && pwd)
build_dir=$(cd "$build_dir" && pwd)
server=${PUBSUBX_SERVER:?PUBSUBX_SERVER: the built pubsubx-server}
client=${PUBSUBX_CLIENT:?PUBSUBX_CLIENT: the built pubsubx-client}
read -ra meson_command <<<"${MESON:-meson}"
read -ra compiler <<<"${CXX:-c++}"

work=$(mktemp -d "${TMPDIR:-/tmp}/pubsubx-install-test.XXXXXX")
dest=$work/destdir
server_pid=
logger_pid=

stop() {  # stop PID: ends a process this script started, if it still runs
    if [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
cleanup() {
    stop "$logger_pid"
    stop "$server_pid"
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    local log
    for log in "$work"/*.log "$work"/*.err; do
        if [[ -s $log ]]; then
            echo "--- $(basename "$log")" >&2
            tail -n 40 "$log" >&2
        fi
    done
    exit 1
}

# wait_for SECONDS PID FILE PATTERN: until FILE has a line matching PATTERN, while PID runs.
wait_for() {
    local deadline=$((SECONDS + $1))
    while ! grep -q -- "$4" "$3" 2>/dev/null; do
        if ! kill -0 "$2" 2>/dev/null; then
            fail "$(basename "$3"): the process ended before printing '$4'"
        fi
        if ((SECONDS >= deadline)); then
            fail "$(basename "$3"): no '$4' within $1 s"
        fi
        sleep 0.1
    done
}

echo "== meson install --destdir $dest (prefix $prefix, libdir $libdir)"
if ! "${meson_command[@]}" install -C "$build_dir" --destdir "$dest" --no-rebuild --quiet \
    >"$work/install.log" 2>&1; then
    fail "meson install into $dest failed"
fi
for file in "$includedir/pubsubx/client.hpp" "$libdir/libpubsubx-client.so" \
    "$libdir/libpubsubx-client.a" "$libdir/pkgconfig/pubsubx-client.pc"; do
    [[ -e $dest$file ]] || fail "not installed: $file (looked for $dest$file)"
done
shared_object=$(readlink -f "$dest$libdir/libpubsubx-client.so")
[[ -f $shared_object ]] || fail "libpubsubx-client.so is a dangling link"

echo "== pkg-config pubsubx-client from $dest"
# The sysroot puts the .pc file's -I and -L paths (under PREFIX) inside the destination.
export PKG_CONFIG_SYSROOT_DIR=$dest
export PKG_CONFIG_PATH=$dest$libdir/pkgconfig
cflags=$(pkg-config --cflags pubsubx-client) || fail "pkg-config --cflags pubsubx-client failed"
libs=$(pkg-config --libs pubsubx-client) || fail "pkg-config --libs pubsubx-client failed"
echo "cflags: $cflags"
echo "libs: $libs"
for flags in "$cflags" "$libs"; do
    if [[ $flags == *"$source_dir"* || $flags == *"$build_dir"* ]]; then
        fail "pkg-config points into the source or build tree: $flags"
    fi
done
[[ " $cflags " == *" -I$dest$includedir "* ]] || fail "no -I$dest$includedir in: $cflags"
[[ " $libs " == *" -L$dest$libdir "* ]] || fail "no -L$dest$libdir in: $libs"
read -ra cflag_words <<<"$cflags"
read -ra lib_words <<<"$libs"

sanitize_flags=()
if [[ $sanitize != none ]]; then
    sanitize_flags=("-fsanitize=$sanitize")
fi
echo "== ${compiler[*]} ${sanitize_flags[*]} logger.cpp \$(pkg-config --cflags --libs pubsubx-client)"
# A copy in the scratch directory: nothing next to it to be found by a relative include.
cp "$logger_source" "$work/logger.cpp"
if ! (cd "$work" && "${compiler[@]}" "${sanitize_flags[@]}" -MMD -MF logger.d -o logger \
    logger.cpp "${cflag_words[@]}" "${lib_words[@]}") >"$work/compile.log" 2>&1; then
    fail "compiling examples/logger.cpp against the installed library failed"
fi
# The header came from the destination, and nothing from the trees.
grep -q -- "$dest$includedir/pubsubx/client.hpp" "$work/logger.d" ||
    fail "logger.cpp did not include $dest$includedir/pubsubx/client.hpp"
if grep -q -e "$source_dir" -e "$build_dir" "$work/logger.d"; then
    fail "logger.cpp included files of the source or build tree: $(grep -e "$source_dir" -e "$build_dir" "$work/logger.d")"
fi
# Only the destination: not the build tree meson test puts there for its own targets.
export LD_LIBRARY_PATH=$dest$libdir
loaded=$(ldd "$work/logger" | grep libpubsubx-client) || fail "logger is not linked to libpubsubx-client"
[[ $loaded == *"$dest$libdir/"* ]] || fail "logger loads another libpubsubx-client: $loaded"

echo "== the installed logger against $server"
"$server" 0 >"$work/server.log" 2>&1 &
server_pid=$!
wait_for 30 "$server_pid" "$work/server.log" "listening on 127.0.0.1:"
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$work/server.log" | head -n 1)
[[ -n $port ]] || fail "no port in the server's start-up line"

"$work/logger" 127.0.0.1 "$port" 'install-test/#' "$work/messages.txt" --count 3 \
    >"$work/logger.log" 2>"$work/logger.err" &
logger_pid=$!
wait_for 30 "$logger_pid" "$work/logger.err" "logger: subscribed to install-test/#"

for i in 1 2 3; do
    "$client" pub -H 127.0.0.1 -p "$port" -t "install-test/$i" -m "message $i, with spaces" \
        >>"$work/pub.log" 2>&1 || fail "pubsubx-client pub of message $i failed"
done

deadline=$((SECONDS + 30))
while kill -0 "$logger_pid" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "the logger did not exit within 30 s of the third message"
    sleep 0.1
done
logger_status=0
wait "$logger_pid" || logger_status=$?
logger_pid=
((logger_status == 0)) || fail "the logger exited with status $logger_status"

expected=$'install-test/1 message 1, with spaces\ninstall-test/2 message 2, with spaces\ninstall-test/3 message 3, with spaces'
actual=$(cat "$work/messages.txt")
if [[ $actual != "$expected" ]]; then
    fail "the logger's file differs; expected:"$'\n'"$expected"$'\n'"got:"$'\n'"$actual"
fi

kill "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=
((server_status == 0)) || fail "the server exited with status $server_status after SIGTERM"
echo "OK: the installed header, libraries and pubsubx-client.pc build and run examples/logger.cpp"
