//! When an environment may be written: `windows` (`"Mon-Thu 09:00-16:00 Europe/Berlin"`),
//! `freeze` periods (`{ from = "2026-12-20", to = "2027-01-04", reason = "holidays" }`) and
//! a `freeze_file` whose presence on the branch stops writes.
//!
//! Outside a window (or inside a freeze) candidates are still polled and decided, so
//! `status` shows what waits and until when; nothing is pushed to the branch and no pull
//! request is merged by `auto_merge`. Times are wall-clock times in the window's IANA time
//! zone, so a window keeps its local hours across a daylight-saving change; a start that
//! falls in the hour a change skips opens at the first minute that exists after it.

use std::path::PathBuf;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime as Zoned};
use toml::Spanned;

use super::diagnostic::Origin;
use super::validator::{Str, Validator, at};

/// How far ahead the next opening is looked for: a freeze longer than this is a config
/// mistake more likely than a plan.
const HORIZON_DAYS: i64 = 400;

/// An environment's deploy windows and freezes; the default is always open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows {
    /// Writes happen inside one of these; none means at any time.
    pub windows: Vec<Window>,
    pub freezes: Vec<Freeze>,
    /// A file whose presence on the environment's branch stops writes.
    pub freeze_file: Option<PathBuf>,
}

/// `Mon-Thu 09:00-16:00 Europe/Berlin`: days of the week, and the hours of each in a zone.
/// An end at or before the start runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// As written, for messages.
    pub text: String,
    /// Monday first.
    days: [bool; 7],
    start: Time,
    end: Time,
    tz: TimeZone,
}

/// A period in which nothing is written: from the start of `from` to the end of `to`, in
/// `tz` (UTC unless said).
#[derive(Debug, Clone, PartialEq)]
pub struct Freeze {
    pub from: Timestamp,
    pub until: Timestamp,
    pub reason: Option<String>,
    /// The last day, as written, for messages.
    pub to: String,
}

/// Why an environment may not be written now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Outside every window; the next opening, in the zone of the window that opens.
    Window { opens: Option<Zoned> },
    /// Inside a freeze.
    Frozen {
        to: String,
        reason: Option<String>,
        opens: Option<Zoned>,
    },
}

impl Closed {
    /// When writing may resume, if within the horizon.
    pub fn opens(&self) -> Option<&Zoned> {
        match self {
            Closed::Window { opens } | Closed::Frozen { opens, .. } => opens.as_ref(),
        }
    }

    /// What `status` says, as of `now`: `waiting for the window Mon 09:00 CET, in 14h`.
    pub fn describe(&self, now: Timestamp) -> String {
        let when = match self.opens() {
            Some(at) => {
                let wait = std::time::Duration::try_from(at.timestamp().duration_since(now))
                    .unwrap_or_default();
                format!(
                    "{}, in {}",
                    at.strftime("%a %Y-%m-%d %H:%M %Z"),
                    short(wait)
                )
            }
            None => format!("none in the next {HORIZON_DAYS} days"),
        };
        match self {
            Closed::Window { .. } => format!("waiting for the window {when}"),
            Closed::Frozen { to, reason, .. } => format!(
                "frozen until {to}{}: next window {when}",
                reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// `14h`, `2d3h`, `25m`: how long until a window opens, to the minute.
fn short(d: std::time::Duration) -> String {
    let minutes = d.as_secs().div_ceil(60);
    let (days, hours, mins) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    match (days, hours, mins) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

impl Window {
    /// Whether `now` is inside this window.
    fn contains(&self, now: Timestamp) -> bool {
        let local = now.to_zoned_datetime(self.tz.clone());
        let today = local.date();
        // A window that runs past midnight may have opened yesterday.
        [today.yesterday().ok(), Some(today)]
            .into_iter()
            .flatten()
            .any(|day| {
                self.span_of(day)
                    .is_some_and(|(start, end)| start <= now && now < end)
            })
    }

    /// The instants this window opens and closes on `day`, if it is one of its days.
    fn span_of(&self, day: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days[usize::from(day.weekday().to_monday_zero_offset().unsigned_abs())] {
            return None;
        }
        let start = self
            .tz
            .to_ambiguous_zoned_datetime(day.to_datetime(self.start));
        let start = start.compatible().ok()?.timestamp();
        let end_day = if self.end <= self.start {
            day.tomorrow().ok()?
        } else {
            day
        };
        let end = self
            .tz
            .to_ambiguous_zoned_datetime(end_day.to_datetime(self.end))
            .compatible()
            .ok()?
            .timestamp();
        Some((start, end))
    }
}

impl Windows {
    /// Whether writing is allowed at `now`, or why not.
    pub fn closed_at(&self, now: Timestamp) -> Option<Closed> {
        let frozen = self.freeze_at(now);
        let in_window = self.windows.is_empty() || self.windows.iter().any(|w| w.contains(now));
        if frozen.is_none() && in_window {
            return None;
        }
        let opens = self.next_opening(now);
        Some(match frozen {
            Some(f) => Closed::Frozen {
                to: f.to.clone(),
                reason: f.reason.clone(),
                opens,
            },
            None => Closed::Window { opens },
        })
    }

    fn freeze_at(&self, now: Timestamp) -> Option<&Freeze> {
        self.freezes.iter().find(|f| f.from <= now && now < f.until)
    }

    fn open_at(&self, t: Timestamp) -> bool {
        self.freeze_at(t).is_none()
            && (self.windows.is_empty() || self.windows.iter().any(|w| w.contains(t)))
    }

    /// The first instant after `now` at which writing is allowed: a window's start or a
    /// freeze's end, whichever comes first and is open, within the horizon.
    fn next_opening(&self, now: Timestamp) -> Option<Zoned> {
        let mut candidates: Vec<(Timestamp, TimeZone)> = self
            .freezes
            .iter()
            .filter(|f| f.until > now)
            .map(|f| (f.until, self.zone()))
            .collect();
        for w in &self.windows {
            let today = now.to_zoned_datetime(w.tz.clone()).date();
            for offset in 0..=HORIZON_DAYS {
                let Ok(day) = today.checked_add(offset.days()) else {
                    break;
                };
                if let Some((start, _)) = w.span_of(day)
                    && start > now
                {
                    candidates.push((start, w.tz.clone()));
                }
            }
        }
        candidates.sort_by_key(|(t, _)| *t);
        candidates
            .into_iter()
            .find(|(t, _)| self.open_at(*t))
            .map(|(t, tz)| t.to_zoned_datetime(tz))
    }

    /// The zone messages about freezes are said in: the first window's, else UTC.
    fn zone(&self) -> TimeZone {
        self.windows.first().map_or(TimeZone::UTC, |w| w.tz.clone())
    }

    pub fn is_always_open(&self) -> bool {
        self.windows.is_empty() && self.freezes.is_empty() && self.freeze_file.is_none()
    }
}

/// `[[environments.NAME.freeze]]` (or `freeze = [{ … }]`) as written.
#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawFreeze {
    /// The first day frozen, `YYYY-MM-DD`.
    #[schemars(with = "Option<String>")]
    pub from: Option<Str>,
    /// The last day frozen, `YYYY-MM-DD`.
    #[schemars(with = "Option<String>")]
    pub to: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub reason: Option<Str>,
    /// The IANA zone the days are in; UTC unless said.
    #[schemars(with = "Option<String>")]
    pub tz: Option<Str>,
}

impl Validator<'_> {
    pub(super) fn windows(
        &mut self,
        windows: Option<&Spanned<Vec<Str>>>,
        freezes: Option<&Spanned<Vec<Spanned<RawFreeze>>>>,
        freeze_file: Option<&Str>,
    ) -> Option<Windows> {
        let mut ok = true;
        let mut out = Windows::default();
        for text in windows.map(|w| w.get_ref().as_slice()).unwrap_or_default() {
            match self.parse(text, "windows", parse_window) {
                Some(w) => out.windows.push(w),
                None => ok = false,
            }
        }
        for raw in freezes.map(|f| f.get_ref().as_slice()).unwrap_or_default() {
            match self.freeze(raw) {
                Some(f) => out.freezes.push(f),
                None => ok = false,
            }
        }
        if let Some(file) = freeze_file {
            match self.parse(file, "freeze_file", |f| {
                super::targets::check_target_path(f)
            }) {
                Some(path) => out.freeze_file = Some(path),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn freeze(&mut self, raw: &Spanned<RawFreeze>) -> Option<Freeze> {
        let f = raw.get_ref();
        let tz = match &f.tz {
            Some(tz) => self.parse(tz, "tz", zone)?,
            None => TimeZone::UTC,
        };
        let day = |v: &mut Self, value: Option<&Str>, key: &str| -> Option<Date> {
            match value {
                Some(d) => v.parse(d, key, |t| {
                    t.parse::<Date>()
                        .map_err(|_| format!("`{t}` is not a day: write it as YYYY-MM-DD"))
                }),
                None => {
                    v.error_hint(
                        Origin::Section(raw.span()),
                        format!("a freeze needs `{key}`"),
                        "freeze = [{ from = \"2026-12-20\", to = \"2027-01-04\", reason = \"holidays\" }]",
                    );
                    None
                }
            }
        };
        let from = day(self, f.from.as_ref(), "from");
        let to = day(self, f.to.as_ref(), "to");
        let (from, to) = (from?, to?);
        if to < from {
            self.error(
                at(f.to.as_ref().expect("parsed")),
                format!("the freeze ends ({to}) before it starts ({from})"),
            );
            return None;
        }
        let instant = |d: Date| {
            tz.to_ambiguous_zoned_datetime(d.to_datetime(Time::midnight()))
                .compatible()
                .ok()
                .map(|z| z.timestamp())
        };
        Some(Freeze {
            from: instant(from)?,
            until: instant(to.tomorrow().ok()?)?,
            reason: f.reason.as_ref().map(|r| r.get_ref().clone()),
            to: to.to_string(),
        })
    }
}

fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| {
        let known: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.to_string())
            .collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        match crate::suggest::suggest(name, &known) {
            Some(s) => format!("`{name}` is not an IANA time zone: did you mean `{s}`?"),
            None => format!(
                "`{name}` is not an IANA time zone: write one such as Europe/Berlin, America/New_York or UTC"
            ),
        }
    })
}

/// `Mon-Thu 09:00-16:00 Europe/Berlin`, `Sat,Sun 10:00-12:00`, `Mon-Fri 22:00-02:00 UTC`.
fn parse_window(text: &str) -> Result<Window, String> {
    let form = || {
        format!(
            "`{text}` is not a window: write days, hours and a zone, as in \"Mon-Thu 09:00-16:00 Europe/Berlin\""
        )
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (days, hours, tz) = match parts.as_slice() {
        [days, hours] => (*days, *hours, TimeZone::UTC),
        [days, hours, tz] => (*days, *hours, zone(tz)?),
        _ => return Err(form()),
    };
    let mut set = [false; 7];
    for part in days.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (weekday(a).ok_or_else(form)?, weekday(b).ok_or_else(form)?);
        let mut day = a;
        loop {
            set[usize::from(day.to_monday_zero_offset().unsigned_abs())] = true;
            if day == b {
                break;
            }
            day = day.next();
        }
    }
    let (start, end) = hours.split_once('-').ok_or_else(form)?;
    let time = |t: &str| -> Result<Time, String> {
        let (h, m) = t.split_once(':').ok_or_else(form)?;
        let (h, m): (i8, i8) = (
            h.parse().map_err(|_| form())?,
            m.parse().map_err(|_| form())?,
        );
        // 24:00 is the end of the day.
        if (h, m) == (24, 0) {
            return Ok(Time::midnight());
        }
        Time::new(h, m, 0, 0).map_err(|_| format!("`{t}` is not a time of day"))
    };
    let (start, end) = (time(start)?, time(end)?);
    if start == end && hours != "00:00-24:00" {
        return Err(format!(
            "`{text}`: the window opens and closes at the same time"
        ));
    }
    Ok(Window {
        text: text.to_string(),
        days: set,
        start,
        end,
        tz,
    })
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.to_ascii_lowercase().as_str() {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn windows(list: &[&str]) -> Windows {
        Windows {
            windows: list.iter().map(|w| parse_window(w).unwrap()).collect(),
            ..Windows::default()
        }
    }

    #[test]
    fn windows_as_people_write_them() {
        assert!(parse_window("Mon-Thu 09:00-16:00 Europe/Berlin").is_ok());
        assert!(parse_window("Sat,Sun 10:00-12:00").is_ok());
        assert!(parse_window("Fri-Mon 22:00-02:00 UTC").is_ok());
        assert!(parse_window("Mon-Fri 00:00-24:00").is_ok());
        for bad in [
            "Mon-Thu",
            "Monday 09:00-10:00",
            "Mon 9-10",
            "Mon 09:00-25:00",
            "Mon 09:00-10:00 Mars/Olympus",
            "Mon 09:00-09:00",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    /// Monday 2026-12-07 at 20:00 in Berlin (CET, UTC+1) is outside; the window opens
    /// Tuesday 09:00 CET, 13 hours later.
    #[test]
    fn outside_a_window_it_says_when_the_next_opens() {
        let w = windows(&["Mon-Thu 09:00-16:00 Europe/Berlin"]);
        assert_eq!(w.closed_at(at("2026-12-07T10:00:00Z")), None);
        let closed = w.closed_at(at("2026-12-07T19:00:00Z")).unwrap();
        assert_eq!(
            closed.describe(at("2026-12-07T19:00:00Z")),
            "waiting for the window Tue 2026-12-08 09:00 CET, in 13h"
        );
        // Thursday evening waits for Monday.
        let closed = w.closed_at(at("2026-12-10T15:30:00Z")).unwrap();
        assert_eq!(
            closed.opens().unwrap().timestamp(),
            at("2026-12-14T08:00:00Z")
        );
    }

    /// Berlin moves from CET (UTC+1) to CEST (UTC+2) at 02:00 on 2027-03-28. A 09:00-10:00
    /// window is 08:00-09:00 UTC the Monday before and 07:00-08:00 UTC the Monday after.
    #[test]
    fn windows_keep_their_local_hours_across_a_daylight_saving_change() {
        let w = windows(&["Mon 09:00-10:00 Europe/Berlin"]);
        assert_eq!(w.closed_at(at("2027-03-22T08:30:00Z")), None);
        assert!(w.closed_at(at("2027-03-29T08:30:00Z")).is_some());
        assert_eq!(w.closed_at(at("2027-03-29T07:30:00Z")), None);
        let closed = w.closed_at(at("2027-03-22T10:00:00Z")).unwrap();
        assert_eq!(
            closed.opens().unwrap().timestamp(),
            at("2027-03-29T07:00:00Z")
        );
        assert_eq!(
            closed.describe(at("2027-03-22T10:00:00Z")),
            "waiting for the window Mon 2027-03-29 09:00 CEST, in 6d21h"
        );
        // A window opening in the skipped hour opens when the clock resumes (03:00 CEST).
        let gap = windows(&["Sun 02:30-04:00 Europe/Berlin"]);
        let closed = gap.closed_at(at("2027-03-28T00:00:00Z")).unwrap();
        assert_eq!(
            closed.opens().unwrap().timestamp(),
            at("2027-03-28T01:30:00Z")
        );
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_opens() {
        let w = windows(&["Fri 22:00-02:00 UTC"]);
        // Friday 2026-12-11 23:00 and Saturday 01:00 are in; Saturday 22:00 is not.
        assert_eq!(w.closed_at(at("2026-12-11T23:00:00Z")), None);
        assert_eq!(w.closed_at(at("2026-12-12T01:00:00Z")), None);
        assert!(w.closed_at(at("2026-12-12T22:00:00Z")).is_some());
    }

    #[test]
    fn a_freeze_covers_its_windows_and_ends_at_the_first_window_after_it() {
        let mut w = windows(&["Mon-Fri 09:00-17:00 Europe/Berlin"]);
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let midnight = |d: &str| {
            berlin
                .to_ambiguous_zoned_datetime(
                    d.parse::<Date>().unwrap().to_datetime(Time::midnight()),
                )
                .compatible()
                .unwrap()
                .timestamp()
        };
        w.freezes.push(Freeze {
            from: midnight("2026-12-21"),
            until: midnight("2027-01-05"),
            reason: Some("holidays".into()),
            to: "2027-01-04".into(),
        });
        let now = at("2026-12-22T10:00:00Z");
        let closed = w.closed_at(now).unwrap();
        assert!(matches!(closed, Closed::Frozen { .. }));
        // The freeze ends at midnight on Tuesday the 5th; the window opens at 09:00.
        assert_eq!(
            closed.opens().unwrap().timestamp(),
            at("2027-01-05T08:00:00Z")
        );
        assert!(
            closed.describe(now).starts_with(
                "frozen until 2027-01-04 (holidays): next window Tue 2027-01-05 09:00 CET"
            ),
            "{}",
            closed.describe(now)
        );
        // Without windows, the freeze's end is the opening.
        w.windows.clear();
        assert_eq!(
            w.closed_at(now).unwrap().opens().unwrap().timestamp(),
            midnight("2027-01-05")
        );
    }
}
