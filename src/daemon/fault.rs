//! Fault injection for the tests of the daemon's own resilience.
//!
//! `IMAGE_UPDATER_FAULT=panic:ALIAS` makes every poll of image `ALIAS` panic, so a test can
//! show that a panicking cycle is caught and counted and that the other images are still
//! polled. `IMAGE_UPDATER_FAULT=pause-before-write:FILE` makes each branch write wait, after
//! the decision and before the last look at the registry, while FILE exists (it is created
//! here; at most 60 s), so a test can push in that window. Nothing else reads the variable;
//! unset, it costs one environment lookup per poll and per write.

/// The variable naming the fault to inject.
pub const VAR: &str = "IMAGE_UPDATER_FAULT";

/// The variable naming a file that holds the time deploy windows are judged at (an RFC 3339
/// instant), so a test can move the clock across a window's opening or a daylight-saving
/// change without waiting for it. Read at each judgement; unset or unreadable, it is now.
pub const CLOCK_VAR: &str = "IMAGE_UPDATER_CLOCK";

/// The time deploy windows are judged at: now, unless [`CLOCK_VAR`] says otherwise.
pub fn now() -> jiff::Timestamp {
    std::env::var_os(CLOCK_VAR)
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(jiff::Timestamp::now)
}

/// Panics when the injected fault names `alias`.
pub fn maybe_panic(alias: &str) {
    if let Some(fault) = std::env::var_os(VAR)
        && fault.to_str().and_then(|f| f.strip_prefix("panic:")) == Some(alias)
    {
        panic!("fault injected by {VAR} for image {alias}");
    }
}

/// Waits while the injected pause's file exists (see the module's doc).
pub async fn maybe_pause_before_write() {
    let Some(fault) = std::env::var_os(VAR) else {
        return;
    };
    let Some(file) = fault
        .to_str()
        .and_then(|f| f.strip_prefix("pause-before-write:"))
    else {
        return;
    };
    let file = std::path::Path::new(file);
    if std::fs::write(file, b"paused\n").is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while file.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The message a panic carried, for the log line that reports it.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
