//! Standard cron schedules, as upstream's CronJob controller reads them
//! (robfig/cron's standard parser): five fields — minute (0-59), hour
//! (0-23), day of month (1-31), month (1-12 or `JAN`-`DEC`) and day of week
//! (0-6 or `SUN`-`SAT`) — each a list of `*`/`?`, values, ranges `a-b` and
//! steps `*/n`, `a-b/n`, `a/n`; or one of `@yearly` (`@annually`),
//! `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly`.
//!
//! When both day fields are restricted a day matching either runs (Vixie
//! cron's rule); when either is `*` both must match. Times are computed in
//! a time zone: the civil time must match, and a time that a DST gap skips
//! runs at the first instant after the gap.

use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// A schedule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not five fields (and not a known `@` descriptor).
    #[error("expected exactly 5 fields, found {0}: {1:?}")]
    FieldCount(usize, String),
    /// An unknown `@` descriptor (`@every` is not standard cron).
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    /// A field that does not parse or is out of range.
    #[error("invalid {field} field {value:?}: {reason}")]
    Field {
        /// Which field.
        field: &'static str,
        /// Its text.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
}

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Bounds = Bounds {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Bounds = Bounds {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Bounds {
    fn err(&self, value: &str, reason: impl Into<String>) -> ScheduleError {
        ScheduleError::Field {
            field: self.name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn number(&self, field: &str, s: &str) -> Result<u32, ScheduleError> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(self.min + i as u32);
        }
        let n: u32 = s
            .parse()
            .map_err(|_| self.err(field, format!("{s:?} is not a number")))?;
        if n < self.min || n > self.max {
            return Err(self.err(field, format!("{n} is outside {}-{}", self.min, self.max)));
        }
        Ok(n)
    }

    /// The bits of a field, and whether it is an unrestricted `*`/`?`.
    fn parse(&self, field: &str) -> Result<(u64, bool), ScheduleError> {
        let mut bits = 0u64;
        let mut star = false;
        for part in field.split(',') {
            if part.is_empty() {
                return Err(self.err(field, "empty list item"));
            }
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s
                        .parse()
                        .map_err(|_| self.err(field, format!("step {s:?} is not a number")))?;
                    if step == 0 {
                        return Err(self.err(field, "step must be positive"));
                    }
                    (r, Some(step))
                }
                None => (part, None),
            };
            let (first, last, any) = if range == "*" || range == "?" {
                (self.min, self.max, true)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.number(field, a)?, self.number(field, b)?, false)
            } else {
                let a = self.number(field, range)?;
                // `a/n` runs from a to the end.
                (a, if step.is_some() { self.max } else { a }, false)
            };
            if first > last {
                return Err(self.err(field, format!("range {first}-{last} is backwards")));
            }
            let step = step.unwrap_or(1);
            if any && step == 1 {
                star = true;
            }
            let mut v = first;
            while v <= last {
                bits |= 1 << v;
                v = v.saturating_add(step);
            }
        }
        Ok((bits, star))
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let expanded = match s.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            d if d.starts_with('@') => return Err(ScheduleError::Descriptor(s.to_string())),
            _ => s.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount(fields.len(), s.to_string()));
        }
        let (minutes, _) = MINUTE.parse(fields[0])?;
        let (hours, _) = HOUR.parse(fields[1])?;
        let (days, days_star) = DAY.parse(fields[2])?;
        let (months, _) = MONTH.parse(fields[3])?;
        let (weekdays, weekdays_star) = WEEKDAY.parse(fields[4])?;
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
        })
    }
}

fn has(bits: u64, v: i64) -> bool {
    (0..64).contains(&v) && bits & (1 << v) != 0
}

/// How far ahead [`Schedule::next_after`] looks before giving up (a
/// schedule like `0 0 30 2 *` never runs).
const HORIZON_YEARS: i16 = 5;

impl Schedule {
    fn day_matches(&self, date: Date) -> bool {
        let dom = has(self.days, i64::from(date.day()));
        let dow = has(
            self.weekdays,
            i64::from(date.weekday().to_sunday_zero_offset()),
        );
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`, in `tz`; `None` if
    /// there is none within five years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        let limit = start.year().saturating_add(HORIZON_YEARS);
        let mut dt = DateTime::new(
            start.year(),
            start.month(),
            start.day(),
            start.hour(),
            start.minute(),
            0,
            0,
        )
        .ok()?
        .checked_add(jiff::Span::new().minutes(1))
        .ok()?;
        loop {
            if dt.year() > limit {
                return None;
            }
            if !has(self.months, i64::from(dt.month())) {
                let (y, m) = if dt.month() == 12 {
                    (dt.year().checked_add(1)?, 1)
                } else {
                    (dt.year(), dt.month() + 1)
                };
                dt = DateTime::new(y, m, 1, 0, 0, 0, 0).ok()?;
                continue;
            }
            if !self.day_matches(dt.date()) {
                dt = dt
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !has(self.hours, i64::from(dt.hour())) {
                dt = DateTime::new(dt.year(), dt.month(), dt.day(), dt.hour(), 0, 0, 0)
                    .ok()?
                    .checked_add(jiff::Span::new().hours(1))
                    .ok()?;
                continue;
            }
            if !has(self.minutes, i64::from(dt.minute())) {
                dt = dt.checked_add(jiff::Span::new().minutes(1)).ok()?;
                continue;
            }
            let at = tz.to_ambiguous_zoned(dt).compatible().ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            dt = dt.checked_add(jiff::Span::new().minutes(1)).ok()?;
        }
    }

    /// The scheduled times in `(earliest, now]`: the most recent one and how
    /// many there were (exact up to 1,000, estimated beyond).
    pub fn most_recent(
        &self,
        earliest: Timestamp,
        now: Timestamp,
        tz: &TimeZone,
    ) -> (Option<Timestamp>, u64) {
        let mut t = earliest;
        let mut last = None;
        let mut count = 0u64;
        while count < 1000 {
            match self.next_after(t, tz) {
                Some(n) if n <= now => {
                    last = Some(n);
                    count += 1;
                    t = n;
                }
                _ => return (last, count),
            }
        }
        // Many missed times: estimate their number from the interval, and
        // find the latest by searching windows that end at `now`.
        let first = self.next_after(earliest, tz);
        let second = first.and_then(|f| self.next_after(f, tz));
        if let (Some(a), Some(b)) = (first, second) {
            let interval = b.duration_since(a).as_secs().max(1);
            let span = now.duration_since(a).as_secs().max(0);
            count = count.max((span / interval) as u64 + 1);
        }
        for window_secs in [
            3_600i64,
            86_400,
            32 * 86_400,
            367 * 86_400,
            6 * 367 * 86_400,
        ] {
            let from = now
                .checked_sub(jiff::SignedDuration::from_secs(window_secs))
                .unwrap_or(Timestamp::MIN)
                .max(t);
            let mut cur = from;
            let mut found = None;
            while let Some(n) = self.next_after(cur, tz).filter(|n| *n <= now) {
                found = Some(n);
                cur = n;
            }
            if found.is_some() {
                return (found, count);
            }
        }
        (last, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn next(schedule: &str, after: &str) -> String {
        let s: Schedule = schedule
            .parse()
            .unwrap_or_else(|e| panic!("{schedule}: {e}"));
        s.next_after(ts(after), &TimeZone::UTC)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn every_minute_runs_on_the_next_whole_minute() {
        assert_eq!(
            next("* * * * *", "2026-03-04T10:20:30Z"),
            "2026-03-04T10:21:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-03-04T10:20:00Z"),
            "2026-03-04T10:21:00Z"
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        assert_eq!(
            next("*/15 * * * *", "2026-03-04T10:20:00Z"),
            "2026-03-04T10:30:00Z"
        );
        assert_eq!(
            next("5-10/5 9,17 * * *", "2026-03-04T09:06:00Z"),
            "2026-03-04T09:10:00Z"
        );
        assert_eq!(
            next("5-10/5 9,17 * * *", "2026-03-04T09:10:00Z"),
            "2026-03-04T17:05:00Z"
        );
        assert_eq!(
            next("30/10 * * * *", "2026-03-04T10:55:00Z"),
            "2026-03-04T11:30:00Z"
        );
    }

    #[test]
    fn names_and_descriptors() {
        // 2026-03-04 is a Wednesday.
        assert_eq!(
            next("0 8 * * MON-FRI", "2026-03-06T09:00:00Z"),
            "2026-03-09T08:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jan,Jul *", "2026-03-04T00:00:00Z"),
            "2026-07-01T00:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-03-04T10:20:00Z"),
            "2026-03-04T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-03-04T10:20:00Z"),
            "2026-03-05T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2026-03-04T10:20:00Z"),
            "2026-03-08T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-03-04T10:20:00Z"),
            "2026-04-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-03-04T10:20:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@annually", "2026-03-04T10:20:00Z"),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // Day 13 or any Friday: Friday 2026-03-06 comes first.
        assert_eq!(
            next("0 0 13 * 5", "2026-03-04T00:00:00Z"),
            "2026-03-06T00:00:00Z"
        );
        // With `*` in day of month, only Fridays.
        assert_eq!(
            next("0 0 * * 5", "2026-03-06T00:00:00Z"),
            "2026-03-13T00:00:00Z"
        );
        // A step on day of month is a restriction, not `*`.
        assert_eq!(
            next("0 0 */10 * 1", "2026-03-04T00:00:00Z"),
            "2026-03-09T00:00:00Z"
        );
    }

    #[test]
    fn impossible_dates_never_run() {
        assert_eq!(next("0 0 30 2 *", "2026-03-04T00:00:00Z"), "");
        assert_eq!(
            next("0 0 29 2 *", "2026-03-04T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in [
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "@every 5m",
            "a * * * *",
            "1,,2 * * * *",
            "TZ=UTC * * * * *",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad} should be refused");
        }
        // A huge step is one value, not an overflow.
        assert_eq!(
            next("5/4294967295 * * * *", "2026-03-04T10:20:00Z"),
            "2026-03-04T11:05:00Z"
        );
        assert!("*/99999999999 * * * *".parse::<Schedule>().is_err());
    }

    #[test]
    fn time_zones_shift_the_civil_time() {
        let Ok(tz) = TimeZone::get("America/New_York") else {
            return; // no tz database on this machine
        };
        let s: Schedule = "0 9 * * *".parse().unwrap_or_else(|e| panic!("{e}"));
        let got = s.next_after(ts("2026-01-15T00:00:00Z"), &tz);
        assert_eq!(got, Some(ts("2026-01-15T14:00:00Z")));
        // Summer time: 9:00 EDT is 13:00 UTC.
        let got = s.next_after(ts("2026-07-15T00:00:00Z"), &tz);
        assert_eq!(got, Some(ts("2026-07-15T13:00:00Z")));
        // 2:30 does not exist on 2026-03-08: it runs right after the gap.
        let s: Schedule = "30 2 * * *".parse().unwrap_or_else(|e| panic!("{e}"));
        let got = s.next_after(ts("2026-03-08T05:00:00Z"), &tz);
        assert_eq!(got, Some(ts("2026-03-08T07:30:00Z")));
    }

    #[test]
    fn most_recent_counts_missed_times() {
        let s: Schedule = "* * * * *".parse().unwrap_or_else(|e| panic!("{e}"));
        let (last, n) = s.most_recent(
            ts("2026-03-04T10:00:30Z"),
            ts("2026-03-04T10:05:10Z"),
            &TimeZone::UTC,
        );
        assert_eq!(last, Some(ts("2026-03-04T10:05:00Z")));
        assert_eq!(n, 5);
        let (last, n) = s.most_recent(
            ts("2026-03-01T00:00:00Z"),
            ts("2026-03-04T10:05:10Z"),
            &TimeZone::UTC,
        );
        assert_eq!(last, Some(ts("2026-03-04T10:05:00Z")));
        assert!(n > 1000);
        let (none, zero) = s.most_recent(
            ts("2026-03-04T10:05:00Z"),
            ts("2026-03-04T10:05:59Z"),
            &TimeZone::UTC,
        );
        assert_eq!((none, zero), (None, 0));
    }
}
