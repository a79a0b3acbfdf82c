//! The files that install the product: the systemd unit passes systemd's own checks, and its
//! hardening stays within the exposure the operating guide promises.

use std::path::Path;
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/image-updater.service");

/// Fails the test, naming the package, when systemd-analyze is not installed.
fn require_systemd_analyze() {
    assert!(
        Path::new("/usr/bin/systemd-analyze").exists(),
        "systemd-analyze is not installed: apt-get install systemd"
    );
}

#[test]
fn the_unit_is_hardened_to_an_exposure_of_at_most_2() {
    require_systemd_analyze();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", UNIT])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}"));
    let level: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(level <= 2.0, "{line}");
}

#[test]
fn the_unit_declares_notify_reload_and_state() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=image-updater",
        "User=image-updater",
        "ExecStart=/usr/bin/image-updater run",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "WatchdogSec=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "missing {line}");
    }
}
