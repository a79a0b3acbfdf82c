#!/usr/bin/env bash
# Builds the Debian package from the packaged binary (`cargo build --profile dist`: fat LTO, one
# codegen unit; see Cargo.toml): the man page and the shell completions are generated from the
# binary itself, then cargo-deb assembles target/debian/*.deb.
# Needs `cargo build --profile dist --locked` first and `cargo install cargo-deb`.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/dist/image-updater
if ! [ -x "$bin" ]; then
    echo "$bin is missing: run cargo build --profile dist --locked first" >&2
    exit 1
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "cargo-deb is missing: cargo install cargo-deb" >&2
    exit 1
fi
mkdir -p target/assets
"$bin" man | gzip -9n > target/assets/image-updater.1.gz
"$bin" completions bash > target/assets/image-updater.bash
"$bin" completions zsh > target/assets/_image-updater
"$bin" completions fish > target/assets/image-updater.fish
cargo deb --no-build --profile dist --locked --strip "$@"
