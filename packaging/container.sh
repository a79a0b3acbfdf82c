#!/usr/bin/env bash
# Builds the container image with no registry pull: a Debian 12 root made with debootstrap
# from Debian's packages (git, openssh-client, ca-certificates and tini included), imported as
# the base, then the Containerfile built on it with buildah.
# Needs `cargo build --profile dist` first, and debootstrap, buildah and podman (for `import`).
#
#   packaging/container.sh [TAG]        # default localhost/image-updater:VERSION
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/dist/image-updater
[ -x "$bin" ] || { echo "$bin is missing: run cargo build --profile dist --locked first" >&2; exit 1; }
for tool in debootstrap buildah podman; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
version=$("$bin" --version | awk '{print $2}')
tag=${1:-localhost/image-updater:$version}
base=localhost/image-updater-base:bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    echo "== debootstrap bookworm ($mirror) into $root" >&2
    debootstrap --variant=minbase --include=git,openssh-client,ca-certificates,tini \
        bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root.log"
    tar -C "$root" --numeric-owner -c . | podman import --quiet - "$base" >/dev/null
    echo "== base image $base" >&2
fi
# chroot isolation: the build's RUN needs no user namespaces or cgroups, so it works inside
# other containers and sandboxes too.
buildah build --quiet --isolation chroot --build-arg "BASE=$base" -t "$tag" -f Containerfile . >/dev/null
echo "$tag"
