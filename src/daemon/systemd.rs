//! systemd's notification protocol (`Type=notify`, and `Type=notify-reload` on systemd 253
//! and newer), through the `sd-notify` crate: READY when the first config is running,
//! RELOADING (with the monotonic time systemd 253 requires) and READY around a reload,
//! WATCHDOG while polling makes progress, STOPPING on shutdown. Outside systemd, nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// Startup is done: the first config is running.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Polling made progress within the watchdog interval.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// A reload begins; [`ready`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => tracing::debug!(error = %e, "cannot read the monotonic clock"),
    }
}

/// How often to send WATCHDOG=1: half of `WATCHDOG_USEC`, when it is meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Says once, at startup, when `NOTIFY_SOCKET` names an abstract socket (`@...`), which the
/// notification crate does not reach; systemd's own sockets are paths.
pub fn check_socket() {
    if std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| s.as_encoded_bytes().starts_with(b"@")) {
        tracing::warn!(
            "NOTIFY_SOCKET names an abstract socket, which is not supported: readiness and the watchdog are not reported"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn sends_to_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        // SAFETY: this test is the only reader of NOTIFY_SOCKET in this process's tests.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        ready();
        reloading();
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 128];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
    }
}
