#!/usr/bin/env bash
# The README's two commands, run cold on a pristine Debian 12 root, as a new user meets them:
# a `debootstrap --variant=minbase bookworm` root holding the committed tree (`git archive`),
# the host's Rust toolchain bind-mounted read-only, an empty CARGO_HOME and target dir. In it:
#
#   1. the README's first command, unchanged (`./demo/run.sh`), whose verdict line must say
#      prod v1.5.0, staging v1.5.0-rc.1 and dev the newest main build;
#   2. the README's test prerequisites line, unchanged, then `cargo test --no-run`: every
#      test binary builds from a fresh root.
#
# The machine's trust settings (the CA bundle SSL_CERT_FILE names, the extra CAs in
# /usr/local/share/ca-certificates) and its apt sources and settings are copied in, as any
# new machine here has them. The pristine root is kept as a tarball under /var/tmp between
# runs; the working root is unmounted and removed by its path when done, and nothing outside
# it is written but that cache.
#
# Needs root and debootstrap. Prints what it timed, and `fresh root: passed` at the end.
#
#   .ci/fresh-root.sh              # the committed HEAD
#   REV=<commit> .ci/fresh-root.sh # another commit (to show the stage fails without a fix)
set -euo pipefail
cd "$(dirname "$0")/.."

rev=${REV:-HEAD}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=/var/tmp/image-updater-ci
pristine=$cache/bookworm-minbase.tar
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")

[ "$(id -u)" = 0 ] || { echo "fresh root: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "fresh root: debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
[ -d "$rustup_home/toolchains" ] || { echo "fresh root: no rustup toolchain at $rustup_home" >&2; exit 1; }

mkdir -p "$cache"
if ! [ -s "$pristine" ]; then
    made=$(mktemp -d "$cache/debootstrap.XXXXXX")
    echo "== debootstrap --variant=minbase bookworm ($mirror), kept as $pristine"
    if ! debootstrap --variant=minbase bookworm "$made" "$mirror" >"$made.log" 2>&1; then
        tail -20 "$made.log" >&2
        rm -rf --one-file-system "$made" "$made.log"
        exit 1
    fi
    rm -rf "$made"/var/cache/apt/archives/*.deb
    tar -C "$made" --numeric-owner -cf "$pristine.part" .
    mv "$pristine.part" "$pristine"
    rm -rf --one-file-system "$made" "$made.log"
fi

root=$(mktemp -d /var/tmp/image-updater-fresh-root.XXXXXX)
mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null || true
    done
    # Never remove through a mount: if anything is still mounted below the root, leave it.
    if findmnt -rn -o TARGET | grep -qF "$root/"; then
        echo "fresh root: something is still mounted under $root; not removing it" >&2
        return
    fi
    rm -rf --one-file-system "$root"
}
trap cleanup EXIT
# Stopped from outside (CI stops the stage when the main suite fails): clean up all the same.
trap 'exit 143' TERM INT
bind_ro() {
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounted+=("$2")
    mount -o remount,bind,ro "$2"
}

tar -C "$root" -xf "$pristine"
# A private /dev (a tmpfs with the few nodes a build uses) and /proc: nothing of the host's
# devices is reachable for writing from the root.
mount -t tmpfs -o mode=0755,nosuid dev "$root/dev"
mounted+=("$root/dev")
for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
    set -- $node
    mknod -m 0666 "$root/dev/$1" c "$2" "$3"
done
mkdir -p "$root/dev/shm" "$root/dev/pts"
ln -s /proc/self/fd "$root/dev/fd"
mount -t proc proc "$root/proc"
mounted+=("$root/proc")
bind_ro "$rustup_home" "$root/opt/rustup"
bind_ro "$cargo_bin" "$root/opt/cargo-bin"

# What any new machine here has: name resolution, trust settings, apt's sources and settings.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
if [ -n "${SSL_CERT_FILE:-}" ] && [ -f "$SSL_CERT_FILE" ]; then
    mkdir -p "$root$(dirname "$SSL_CERT_FILE")"
    cp -L "$SSL_CERT_FILE" "$root$SSL_CERT_FILE"
fi
if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
    /etc/apt/apt.conf.d/99*; do
    [ -f "$f" ] && cp -L "$f" "$root$f"
done

mkdir -p "$root/src/image-updater"
git archive "$rev" | tar -x -C "$root/src/image-updater"

# Runs a command in the root as a new user's root shell would: the toolchain on PATH and
# nothing else of the host's environment but the trust settings' variables.
in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI=true \
        PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        RUSTUP_HOME=/opt/rustup RUSTUP_AUTO_INSTALL=0 CARGO_HOME=/root/.cargo \
        ${SSL_CERT_FILE:+SSL_CERT_FILE=$SSL_CERT_FILE} \
        /bin/bash -c "cd /src/image-updater && $1"
}

# 1. The README's first command, exactly as the README gives it.
first=$(awk '/^## Quickstart/ {q = 1} q && /^```sh/ {getline; print; exit}' README.md)
[ "$first" = "./demo/run.sh" ] || { echo "fresh root: the README's first command is now '$first'; update this stage" >&2; exit 1; }
log=$cache/fresh-root-demo.log
start=$(date +%s)
echo "== in the fresh root: $first"
if ! in_root "$first" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fresh root: the README's first command failed after $(($(date +%s) - start)) s (log: $log)" >&2
    exit 1
fi
demo_s=$(($(date +%s) - start))
verdict=$(grep -E '^== verdict: ' "$log" || true)
for want in 'prod api v1\.5\.0 ' 'staging api v1\.5\.0-rc\.1 ' 'dev api main-8b7e6d4 '; do
    grep -qE "$want" <<<"$verdict" || { tail -40 "$log" >&2; echo "fresh root: the demo's verdict lacks '$want'" >&2; exit 1; }
done
echo "$verdict"
echo "== the demo, cold from a fresh root: ${demo_s} s"

# 2. The README's test prerequisites line, exactly as the README gives it, then every test
# binary built.
prereq=$(awk '/^## Tests/ {t = 1} t && /^```sh/ {getline; print; exit}' README.md)
case "$prereq" in
    *apt-get\ install*) ;;
    *) echo "fresh root: the README's test prerequisites line is now '$prereq'; update this stage" >&2; exit 1 ;;
esac
log=$cache/fresh-root-tests.log
start=$(date +%s)
echo "== in the fresh root: $prereq"
if ! in_root "$prereq && cargo test --locked --no-run" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fresh root: the test prerequisites or the test build failed (log: $log)" >&2
    exit 1
fi
tail -n 3 "$log"
echo "== target/ in the fresh root after the test build: $(du -sh "$root/src/image-updater/target" | cut -f1)"
echo "== the test prerequisites and cargo test --no-run, cold: $(($(date +%s) - start)) s"
echo "fresh root: passed"
