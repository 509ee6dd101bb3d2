#!/bin/sh
# meson install script: installs the example configuration as DIR/pubsubx-server.toml unless
# a file is there already (an operator's edits survive `meson install` of a new version; the
# new example is left beside it as pubsubx-server.toml.new).
# usage: install_config.sh EXAMPLE DIR   (DIR absolute; meson sets DESTDIR when staging)
set -eu
example=$1
dir=${DESTDIR:-}$2
if [ -n "${MESON_INSTALL_DRY_RUN:-}" ]; then
    echo "Would install $example to $dir/pubsubx-server.toml unless it exists"
    exit 0
fi
mkdir -p "$dir"
if [ -e "$dir/pubsubx-server.toml" ]; then
    install -m 644 "$example" "$dir/pubsubx-server.toml.new"
    echo "Kept $dir/pubsubx-server.toml; the new example is $dir/pubsubx-server.toml.new"
else
    install -m 644 "$example" "$dir/pubsubx-server.toml"
    echo "Installing $example to $dir"
fi
