#!/usr/bin/env bash
# Installs the Debian package on this machine with dpkg, checks what it installed the way an
# operator would use it, then purges it. Run as root after packaging/deb.sh; CI runs it.
# Prints `deb: N passed, 0 failed`, or stops at the first check that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(ls -t target/debian/image-updater_*.deb 2>/dev/null | head -1)
if [ -z "$deb" ]; then
    echo "no package in target/debian: run packaging/deb.sh first" >&2
    exit 1
fi
if dpkg -s image-updater >/dev/null 2>&1; then
    echo "image-updater is already installed here; this test installs and purges its own" >&2
    exit 1
fi
passed=0
check() {
    local what=$1
    shift
    if ! "$@" >/tmp/image-updater-deb-check.log 2>&1; then
        echo "FAILED: $what" >&2
        cat /tmp/image-updater-deb-check.log >&2
        exit 1
    fi
    echo "ok: $what"
    passed=$((passed + 1))
}

trap 'dpkg --purge image-updater >/dev/null 2>&1 || true' EXIT
check "dpkg -i $deb" dpkg -i "$deb"
check "the binary runs" /usr/bin/image-updater --version
check "the system user exists" id image-updater
check "the state dir is 0700 and the daemon's" \
    test "$(stat -c '%a %U' /var/lib/image-updater)" = "700 image-updater"
check "the config dir is readable by the daemon's group" \
    test "$(stat -c '%a %U %G' /etc/image-updater)" = "750 root image-updater"
check "image-updater check accepts the shipped example" \
    /usr/bin/image-updater check --config /usr/share/doc/image-updater/updater.toml.example
check "systemd-analyze verify accepts the installed unit" \
    systemd-analyze verify /lib/systemd/system/image-updater.service
check "the man page is installed" test -s /usr/share/man/man1/image-updater.1.gz
check "the man page renders" sh -c 'zcat /usr/share/man/man1/image-updater.1.gz | grep -q "IMAGE-UPDATER POLL"'
check "bash completions are installed" test -s /usr/share/bash-completion/completions/image-updater
check "the alert rules and dashboard are installed" \
    test -s /usr/share/doc/image-updater/prometheus/image-updater.rules.yml
check "dpkg --purge" dpkg --purge image-updater
check "purge removed the binary and the state dir" \
    sh -c '! [ -e /usr/bin/image-updater ] && ! [ -e /var/lib/image-updater ]'
trap - EXIT
echo "deb: ${passed} passed, 0 failed"
