//! Fault injection for the tests of the daemon's own resilience.
//!
//! `IMAGE_UPDATER_FAULT=panic:ALIAS` makes every poll of image `ALIAS` panic, so a test can
//! show that a panicking cycle is caught and counted and that the other images are still
//! polled. Nothing else reads the variable; unset, it costs one environment lookup per poll.

/// The variable naming the fault to inject.
pub const VAR: &str = "IMAGE_UPDATER_FAULT";

/// Panics when the injected fault names `alias`.
pub fn maybe_panic(alias: &str) {
    if let Some(fault) = std::env::var_os(VAR)
        && fault.to_str().and_then(|f| f.strip_prefix("panic:")) == Some(alias)
    {
        panic!("fault injected by {VAR} for image {alias}");
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
