#!/usr/bin/env bash
# The main job on loopback, with no internet: a registry and a git server on 127.0.0.1, a
# manifests repository with three environment branches, images pushed like a real project's
# (main-<sha> builds, a release candidate, releases), and the daemon committing what each
# environment's rules allow. Everything it starts is stopped, by PID, when it ends.
#
#   ./demo/run.sh            # keep the files in a temporary directory, removed at the end
#   KEEP=1 ./demo/run.sh     # keep them, to look around afterwards
#   IMAGE_UPDATER_BIN=CMD ./demo/run.sh   # run CMD instead of building target/debug
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

command -v cargo >/dev/null || { echo "cargo is needed: install a Rust toolchain (1.88 or newer)" >&2; exit 1; }
need() { command -v "$1" >/dev/null || MISSING="${MISSING:-} $2"; }
need docker-registry docker-registry
need git git
need curl curl
need sha256sum coreutils
need python3 python3
# Building needs a C compiler and linker (cargo links with cc; aws-lc's crypto is C), and the
# etcd client's protocol is compiled from etcd's .proto files, which import protobuf's own
# well-known types: protoc alone (protobuf-compiler) is not enough, its includes are in
# libprotobuf-dev. Checked here, before a build that would otherwise stop minutes in.
if [ -z "${IMAGE_UPDATER_BIN:-}" ]; then
    need cc gcc
    [ -e /usr/include/stdio.h ] || MISSING="${MISSING:-} libc6-dev"
    need protoc protobuf-compiler
    [ -e /usr/include/google/protobuf/descriptor.proto ] || MISSING="${MISSING:-} libprotobuf-dev"
fi
if [ -n "${MISSING:-}" ]; then
    echo "== installing:$MISSING"
    if [ "$(id -u)" != 0 ]; then
        echo "run as root, or install them first: apt-get install$MISSING" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Another apt (unattended upgrades, say) may hold the lock: wait for it, a while.
    apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
    echo "   (waiting up to 5 minutes if another package manager is running)"
    apt_get update -qq && apt_get install -y -qq --no-install-recommends $MISSING >/dev/null
fi

if [ -n "${IMAGE_UPDATER_BIN:-}" ]; then
    # Another build of the binary, or a command that runs it (in a container, say).
    BIN=$IMAGE_UPDATER_BIN
else
    echo "== building image-updater (the first build takes a while; cargo shows its progress)"
    # The dev profile: a cold build takes about half the release build's time on 2 cores
    # (docs/benchmarks.md, "Build time"), the demo runs as fast with it (two seconds either
    # way), and `cargo test`, the README's second command, reuses every dependency it built.
    cargo build --locked
    BIN=$ROOT/target/debug/image-updater
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "files kept in $WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

# --- the registry -------------------------------------------------------------------------
REG_PORT=$(free_port)
REG=127.0.0.1:$REG_PORT
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: $REG}
EOF
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
PIDS+=($!)
wait_port "$REG_PORT"
echo "== registry on http://$REG"

# Pushes a one-layer image through the registry API (no Docker): push REPO TAG CREATED
push() {
    local repo=$1 tag=$2 created=$3 config layer cdig ldig manifest
    config=$(printf '{"architecture":"amd64","os":"linux","created":"%s","rootfs":{"type":"layers","diff_ids":[]},"config":{}}' "$created")
    layer="layer of $repo:$tag"
    cdig=sha256:$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
    ldig=sha256:$(printf '%s' "$layer" | sha256sum | cut -d' ' -f1)
    for blob in config layer; do
        local body=${!blob} digest location
        digest=$([ "$blob" = config ] && echo "$cdig" || echo "$ldig")
        location=$(curl -sSf -X POST -D - -o /dev/null "http://$REG/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
        case $location in /*) location=http://$REG$location ;; esac
        case $location in *\?*) sep='&' ;; *) sep='?' ;; esac
        printf '%s' "$body" | curl -sSf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @- "$location${sep}digest=$digest" -o /dev/null
    done
    manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' "$cdig" "${#config}" "$ldig" "${#layer}")
    printf '%s' "$manifest" | curl -sSf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @- "http://$REG/v2/$repo/manifests/$tag" -o /dev/null
}

echo "== pushing images"
push org/api v1.4.0          2026-10-01T10:00:00Z
push org/api main-3f2a9c1    2026-11-20T09:00:00Z
push org/api main-8b7e6d4    2026-11-23T16:30:00Z
push org/api v1.5.0-rc.1     2026-11-21T12:00:00Z
push org/api v1.5.0          2026-11-22T12:00:00Z
push org/api v2.0.0          2026-11-23T12:00:00Z
push org/api pr-1234         2026-11-23T17:00:00Z
push org/web 2.3.0           2026-10-01T10:00:00Z
push org/web 2.4.0           2026-11-22T10:00:00Z
push org/web 3.0.0-beta.1    2026-11-23T10:00:00Z
curl -sSf "http://$REG/v2/org/api/tags/list"; echo
curl -sSf "http://$REG/v2/org/web/tags/list"; echo

# --- the manifests repository -------------------------------------------------------------
GIT_PORT=$(free_port)
export GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME="Dana Developer" GIT_AUTHOR_EMAIL=dana@example.com \
    GIT_COMMITTER_NAME="Dana Developer" GIT_COMMITTER_EMAIL=dana@example.com
mkdir -p "$WORK/git" "$WORK/seed"
git init -q --bare -b main "$WORK/git/manifests.git"
cd "$WORK/seed"
git init -q -b main
mkdir -p apps/api/base charts/web
for env in dev staging prod; do
    mkdir -p "apps/api/overlays/$env"
    cat > "apps/api/overlays/$env/kustomization.yaml" <<EOF
# $env overlay of the API
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
images:
  - name: $REG/org/api
    newTag: v1.4.0   # managed by image-updater
EOF
    cat > "charts/web/values-$env.yaml" <<EOF
# web chart values for $env
replicaCount: $([ "$env" = prod ] && echo 3 || echo 1)
image:
  repository: $REG/org/web
  tag: "2.3.0"
  pullPolicy: IfNotPresent
EOF
done
cat > apps/api/base/kustomization.yaml <<EOF
resources:
  - deployment.yaml
EOF
cat > apps/api/base/deployment.yaml <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  template:
    spec:
      containers:
        - name: api
          image: $REG/org/api
EOF
git add -A && git commit -q -m "manifests for dev, staging and prod"
for env in dev staging prod; do git branch "deploy/$env"; done
git push -q "$WORK/git/manifests.git" main deploy/dev deploy/staging deploy/prod
cd "$ROOT"
# git-daemon itself, not `git daemon`, which would run it as a child the PID does not cover.
"$(git --exec-path)/git-daemon" --reuseaddr --listen=127.0.0.1 --port="$GIT_PORT" --base-path="$WORK/git" \
    --export-all --enable=receive-pack "$WORK/git" > "$WORK/git-daemon.log" 2>&1 &
PIDS+=($!)
wait_port "$GIT_PORT"
echo "== git server on git://127.0.0.1:$GIT_PORT/manifests.git"

# --- the config ---------------------------------------------------------------------------
cat > "$WORK/updater.toml" <<EOF
[settings]
interval = "5s"
log_level = "info"

[registries.local]
prefix = "$REG"
api_url = "http://$REG"
insecure = true

[repositories.manifests]
url = "git://127.0.0.1:$GIT_PORT/manifests.git"
author = "image-updater <image-updater@example.com>"

[environments.dev]
branch = "deploy/dev"
[environments.staging]
branch = "deploy/staging"
[environments.prod]
branch = "deploy/prod"

# The API: dev runs the newest main build, staging release candidates, prod stable 1.x.
[images.api]
image = "$REG/org/api"
constraint = ">=1.0.0 <2.0.0"
[[images.api.targets]]
kind = "kustomization"
file = "apps/api/overlays/{environment}/kustomization.yaml"
name = "$REG/org/api"
[images.api.env.dev]
strategy = "newest-build"
allow_tags = ["regexp:^main-[0-9a-f]{7}$"]
[images.api.env.staging]
constraint = ">=1.0.0-0 <2.0.0"
allow_tags = ["regexp:^v[0-9]+\\\\.[0-9]+\\\\.[0-9]+-rc\\\\.[0-9]+$"]

# The web chart: the newest 2.x everywhere, never a beta.
[images.web]
image = "$REG/org/web"
constraint = "^2"
[[images.web.targets]]
kind = "helm"
file = "charts/web/values-{environment}.yaml"
tag = "image.tag"
EOF
"$BIN" check --config "$WORK/updater.toml"

echo "== what would change (image-updater plan)"
"$BIN" plan --config "$WORK/updater.toml" --state-dir "$WORK/state" 2>/dev/null

echo "== running the daemon"
METRICS_PORT=$(free_port)
"$BIN" run --config "$WORK/updater.toml" --state-dir "$WORK/state" --listen "127.0.0.1:$METRICS_PORT" \
    > "$WORK/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=($DAEMON)
for _ in $(seq 150); do
    n=0
    for env in dev staging prod; do
        [ "$(git --git-dir="$WORK/git/manifests.git" rev-list --count "deploy/$env")" -gt 1 ] && n=$((n + 1))
    done
    [ "$n" = 3 ] && break
    sleep 0.2
done
grep -E ' updated ' "$WORK/daemon.log" | sed 's/^[^ ]* *//' || true

echo
for env in dev staging prod; do
    echo "== deploy/$env"
    git --git-dir="$WORK/git/manifests.git" log --format='%h %an: %s' -n 2 "deploy/$env"
    git --git-dir="$WORK/git/manifests.git" show --format= --unified=0 "deploy/$env" | grep -E '^[-+] ' || true
    echo
done
curl -sS "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^image_updater_(images_updated_total|git_pushes_total)' || true
kill -TERM "$DAEMON"
wait "$DAEMON" || true

# The verdict is read from what each branch holds now, not assumed: the API's tag in the
# overlay and the web chart's tag in the values, per environment.
holds() { git --git-dir="$WORK/git/manifests.git" show "deploy/$1:$2" | sed -nE "s/^ *$3: \"?([^\" ]+)\"?.*/\1/p"; }
verdict=""
wrong=""
for env in prod staging dev; do
    api=$(holds "$env" "apps/api/overlays/$env/kustomization.yaml" newTag)
    web=$(holds "$env" "charts/web/values-$env.yaml" tag)
    verdict="$verdict${verdict:+, }$env api $api web $web"
    case "$env" in
        prod) want=v1.5.0 ;;
        staging) want=v1.5.0-rc.1 ;;
        dev) want=main-8b7e6d4 ;;
    esac
    [ "$api" = "$want" ] && [ "$web" = 2.4.0 ] || wrong="$wrong $env"
done
if [ -n "$wrong" ]; then
    echo "== verdict: WRONG on$wrong: $verdict (see $WORK/daemon.log; KEEP=1 keeps it)" >&2
    exit 1
fi
echo "== verdict: $verdict (prod never v2.0.0, staging the release candidate, dev the newest main build)"
