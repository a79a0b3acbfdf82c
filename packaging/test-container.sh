#!/usr/bin/env bash
# Builds the container image offline (packaging/container.sh) and runs it: the binary, its
# user and tools, `image-updater check` on the shipped example, and the demo's job (the
# loopback registry and git server, every environment committed) with the daemon inside the
# image. Run as root after `cargo build --release`; CI runs it.
#
# The image runs under buildah's chroot isolation, which needs no user namespaces or cgroups.
# `podman run` (crun) is tried too; where the machine forbids what crun needs (this sandbox
# refuses setrlimit inside a container), the exact error is printed and counted as not
# runnable here, never as passed.
# Prints `container: N passed, 0 failed, M not runnable here`, or stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=$(packaging/container.sh localhost/image-updater:test)
echo "built $tag"
passed=0
unrunnable=0
log=$(mktemp)
ctr=""
cleanup() {
    [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT
check() {
    local what=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "FAILED: $what" >&2
        cat "$log" >&2
        exit 1
    fi
    echo "ok: $what"
    passed=$((passed + 1))
}
inspect() { buildah inspect --type image --format "$1" "$tag"; }
ctr=$(buildah from --quiet "$tag")
# Runs a command in the image as its own user, on the host's network (the loopback servers).
in_image() { buildah run --isolation chroot --network host "$ctr" -- "$@"; }

check "the image runs as UID 10001" test "$(inspect '{{.OCIv1.Config.User}}')" = "10001:10001"
check "the entrypoint is tini, then the binary" \
    sh -c "test \"\$(buildah inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' $tag)\" = '[/usr/bin/tini -- /usr/local/bin/image-updater]'"
check "the binary runs in the image" in_image /usr/local/bin/image-updater --version
check "as UID 10001" sh -c "test \"\$(buildah run --isolation chroot $ctr -- id -u)\" = 10001"
check "git and ssh are in the image" in_image sh -c 'git --version && ssh -V'
check "image-updater check accepts the shipped example" \
    in_image /usr/local/bin/image-updater check --config /etc/image-updater/updater.toml.example

# The demo's job with the daemon in the image: its files live under the demo's temporary
# directory, mounted at the same path; it runs as the caller, who owns that directory.
wrapper=$(mktemp)
cat >"$wrapper" <<WRAP
#!/bin/sh
exec buildah run --isolation chroot --network host --user "$(id -u):$(id -g)" \
    -v "\${TMPDIR:-/tmp}:\${TMPDIR:-/tmp}" "$ctr" -- /usr/local/bin/image-updater "\$@"
WRAP
chmod +x "$wrapper"
demo_job() {
    IMAGE_UPDATER_BIN="$wrapper" ./demo/run.sh >"$log.demo" 2>&1 || { cat "$log.demo"; return 1; }
    cat "$log.demo"
    # Each branch shows its commit's changed lines: prod v1.5.0, staging the rc, dev a build.
    for want in '^== deploy/prod' '^\+ *newTag: v1\.5\.0 ' '^\+ *newTag: v1\.5\.0-rc\.1 ' '^\+ *newTag: main-8b7e6d4 '; do
        grep -qE "$want" "$log.demo" || { echo "missing: $want"; return 1; }
    done
}
check "the demo's job, with the daemon in the image" demo_job
rm -f "$wrapper" "$log.demo"

# podman run: passes where the machine lets crun start a container; otherwise says why.
if podman run --rm --network host "$tag" --version >"$log" 2>&1; then
    echo "ok: podman run"
    passed=$((passed + 1))
else
    echo "not runnable here: podman run: $(grep -m1 -iE 'error|denied' "$log" || tail -1 "$log")"
    unrunnable=$((unrunnable + 1))
fi
echo "container: ${passed} passed, 0 failed, ${unrunnable} not runnable here"
