//! `[ui]`: the status page the daemon serves on its operator's listener, and who may read it.
//!
//! The section as written ([`RawUi`]), as validated ([`Ui`]), and the checks between them.
//! Acting on the page (hold, release, poll now) always needs the daemon's control token, the
//! one `image-updater poll` uses; reading needs a token only when `read_token` is set.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::credentials::CredentialRef;
use super::validator::{Str, Validator, at};

// ---- As written ----

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawUi {
    #[schemars(with = "Option<bool>")]
    pub enabled: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub read_token: Option<Str>,
    #[schemars(with = "Option<i64>")]
    pub page_size: Option<Spanned<i64>>,
}

// ---- As validated ----

/// `[ui]`: the status page at `/` on the operator's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ui {
    /// A token reading the page and its JSON needs too; without it, whoever reaches the
    /// listener may read (acting always needs the control token).
    pub read_token: Option<CredentialRef>,
    /// Images per page of the matrix.
    pub page_size: usize,
}

/// Images per page unless `page_size` says otherwise: a page a browser draws at once.
pub const PAGE_SIZE: usize = 100;
/// The most images a page may be asked to hold.
pub const MAX_PAGE_SIZE: usize = 1000;

// ---- The checks ----

impl Validator<'_> {
    /// `None` when the page is off (`enabled = false`) or the section was wrong (reported).
    pub(super) fn ui(&mut self, raw: &Spanned<RawUi>) -> Option<Ui> {
        let raw = raw.get_ref();
        // Both checked before either is given up on: every mistake is said in one run.
        let read_token = match &raw.read_token {
            Some(t) => self.parse(t, "read_token", CredentialRef::parse).map(Some),
            None => Some(None),
        };
        let page_size = match &raw.page_size {
            None => Some(PAGE_SIZE),
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Some(n),
                _ => {
                    self.error_hint(
                        at(n),
                        format!("page_size {} is out of range", n.get_ref()),
                        format!(
                            "a number of images from 1 to {MAX_PAGE_SIZE} (default {PAGE_SIZE})"
                        ),
                    );
                    None
                }
            },
        };
        let (read_token, page_size) = (read_token?, page_size?);
        if raw.enabled.as_ref().is_some_and(|e| !*e.get_ref()) {
            return None;
        }
        Some(Ui {
            read_token,
            page_size,
        })
    }
}
