//! `[settings]`: the daemon's own settings, from the file or an `IMAGE_UPDATER_SETTINGS__*`
//! variable, each error pointing at whichever of the two supplied the value.

use std::path::PathBuf;

use toml::Spanned;

use super::{Validator, parse_duration};
use crate::config::diagnostic::Origin;
use crate::config::env;
use crate::config::model::{LogFormat, Settings};
use crate::config::raw::RawSettings;

impl Validator<'_> {
    /// Where a setting came from: the environment, the file, or nowhere (a default).
    pub(super) fn setting_origin(
        &self,
        key: &str,
        raw: Option<&Spanned<RawSettings>>,
        source_len: usize,
    ) -> Origin {
        if let Some(origin) = self.overlay.env_origin(&["settings", key]) {
            return origin;
        }
        let spanned = raw.and_then(|r| {
            let r = r.get_ref();
            match key {
                "state_dir" => r.state_dir.as_ref(),
                "interval" => r.interval.as_ref(),
                "log_level" => r.log_level.as_ref(),
                "log_format" => r.log_format.as_ref(),
                "listen" => r.listen.as_ref(),
                _ => None,
            }
            .map(Spanned::span)
            .or_else(|| match key {
                "unhealthy_after" => r.unhealthy_after.as_ref().map(Spanned::span),
                _ => None,
            })
        });
        match spanned {
            Some(span) => Origin::File(span),
            None => Origin::Section(source_len..source_len),
        }
    }

    pub(super) fn settings(
        &mut self,
        raw: Option<&Spanned<RawSettings>>,
        source_len: usize,
    ) -> Settings {
        let values = self.overlay.values.settings.clone();
        let get = |key: &str| values.get(key).map(env::as_string);
        let mut settings = Settings {
            state_dir: PathBuf::from(Settings::DEFAULT_STATE_DIR),
            interval: Settings::DEFAULT_INTERVAL,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            listen: Settings::DEFAULT_LISTEN.parse().expect("valid default"),
            unhealthy_after: Settings::DEFAULT_UNHEALTHY_AFTER,
        };
        if let Some(dir) = get("state_dir") {
            if dir.is_empty() {
                let origin = self.setting_origin("state_dir", raw, source_len);
                self.error(origin, "state_dir is empty");
            } else {
                settings.state_dir = PathBuf::from(dir);
            }
        }
        if let Some(text) = get("interval") {
            match parse_duration(&text) {
                Ok(d) => settings.interval = d,
                Err(e) => {
                    let origin = self.setting_origin("interval", raw, source_len);
                    self.error(origin, format!("interval: {e}"));
                }
            }
        }
        if let Some(level) = get("log_level") {
            match tracing_subscriber::EnvFilter::try_new(&level) {
                Ok(_) => settings.log_level = level,
                Err(e) => {
                    let origin = self.setting_origin("log_level", raw, source_len);
                    self.error_hint(
                        origin,
                        format!("log_level `{level}` is not a log filter: {e}"),
                        "use error, warn, info, debug or trace, or a directive like `image_updater=debug`",
                    );
                }
            }
        }
        if let Some(format) = get("log_format") {
            match format.as_str() {
                "text" => settings.log_format = LogFormat::Text,
                "json" => settings.log_format = LogFormat::Json,
                other => {
                    let origin = self.setting_origin("log_format", raw, source_len);
                    self.error(
                        origin,
                        format!("log_format `{other}`: expected `text` or `json`"),
                    );
                }
            }
        }
        if let Some(listen) = get("listen") {
            match listen.parse() {
                Ok(addr) => settings.listen = addr,
                Err(_) => {
                    let origin = self.setting_origin("listen", raw, source_len);
                    self.error_hint(
                        origin,
                        format!("listen `{listen}` is not an address"),
                        "write IP:PORT, such as 127.0.0.1:8081",
                    );
                }
            }
        }
        if let Some(text) = get("unhealthy_after") {
            match text.parse::<u32>() {
                Ok(n) if n >= 1 => settings.unhealthy_after = n,
                _ => {
                    let origin = self.setting_origin("unhealthy_after", raw, source_len);
                    self.error(
                        origin,
                        format!("unhealthy_after `{text}`: expected a whole number of intervals, 1 or more"),
                    );
                }
            }
        }
        settings
    }
}
