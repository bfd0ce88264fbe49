//! OpenTSDB's time syntax (`DateTime.parseDateTimeString`, `parseDuration`)
//! and the wall-clock arithmetic calendar downsampling needs.
//!
//! Accepted forms, as OpenTSDB 2.4 reads them:
//!
//! - `now`;
//! - `<n><unit>-ago` with units `ms s m h d w n y` (`n` = 30 days, `y` = 365
//!   days). Only the last character picks the unit, so `1.5h-ago` is `1h-ago`;
//! - `<digits>ms`: epoch milliseconds;
//! - `yyyy/MM/dd`, `yyyy/MM/dd-HH:mm[:ss]` and `yyyy/MM/dd HH:mm[:ss]`,
//!   chosen by length and parsed leniently (month 13 rolls into the next
//!   year) in the query's `timezone`, UTC when none is given (OpenTSDB uses
//!   the JVM's default zone; rtsd servers run in UTC);
//! - epoch numbers: up to 10 characters are seconds, longer ones are ms.
//!
//! One deliberate difference: `1356998400.5` means 1356998400 s plus half a
//! second. OpenTSDB deletes the dot and lands in 1970; rtsd's telnet parser
//! already treats `<seconds>.<fraction>` as a fraction (see the "differs on
//! purpose" table), and queries follow suit.
//!
//! Wall-clock times that do not exist (a spring-forward gap) resolve with
//! the offset in force before the change, and repeated ones (fall-back)
//! resolve to the later instant, as `java.util.GregorianCalendar` does.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use crate::java::number;
use crate::model::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use crate::query::error::QueryError;

/// Parses a query time into epoch milliseconds. `now_ms` anchors `now` and
/// the `-ago` forms; `tz` applies to absolute dates (UTC when `None`).
pub fn parse_time(s: &str, now_ms: i64, tz: Option<Tz>) -> Result<i64, QueryError> {
    let lower = s.to_ascii_lowercase();
    if lower == "now" {
        return Ok(now_ms);
    }
    if lower.ends_with("-ago") {
        // The last four bytes are ASCII in `s` too, so this is a char
        // boundary; the duration keeps its case (`1MS` means seconds).
        let ms = parse_duration(&s[..s.len() - 4])?;
        return Ok(now_ms.saturating_sub(ms));
    }
    if s.contains('/') || s.contains(':') {
        return parse_absolute(s, tz.unwrap_or(Tz::UTC));
    }
    if let Some(digits) = lower.strip_suffix("ms") {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits
                .parse::<i64>()
                .map_err(|_| QueryError::bad(format!("Invalid time: {s}. Overflow in {digits}")));
        }
    }
    if s.contains('.') {
        return parse_dotted_seconds(s);
    }
    let time =
        number::parse_long(s).map_err(|e| QueryError::bad(format!("Invalid time: {s}. {e}")))?;
    if time < 0 {
        return Err(QueryError::bad(format!(
            "Invalid time: {s}. Negative timestamps are not supported."
        )));
    }
    // OpenTSDB's rule: ten characters or fewer are seconds (until 2286).
    if s.chars().count() <= 10 {
        Ok(time.saturating_mul(1000))
    } else {
        Ok(time)
    }
}

/// `<10 digits>.<1 to 3 digits>`: seconds with a fraction kept to the ms.
fn parse_dotted_seconds(s: &str) -> Result<i64, QueryError> {
    let invalid = || {
        QueryError::bad(format!(
            "Invalid time: {s}. Millisecond timestamps must be in the format \
             <seconds>.<ms> where the milliseconds are limited to 3 digits"
        ))
    };
    let (secs, frac) = s.split_once('.').ok_or_else(invalid)?;
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if secs.len() != 10 || frac.is_empty() || frac.len() > 3 || !digits(secs) || !digits(frac) {
        return Err(invalid());
    }
    let secs: i64 = secs.parse().map_err(|_| invalid())?;
    let mut ms: i64 = frac.parse().map_err(|_| invalid())?;
    for _ in frac.len()..3 {
        ms *= 10;
    }
    Ok(secs * 1000 + ms)
}

/// OpenTSDB's `DateTime.parseDuration`: `<positive integer><unit>` in ms.
pub fn parse_duration(d: &str) -> Result<i64, QueryError> {
    let bytes = d.as_bytes();
    let mut unit = 0;
    while unit < bytes.len() && bytes[unit].is_ascii_digit() {
        unit += 1;
        if unit >= bytes.len() {
            return Err(QueryError::bad(format!(
                "Invalid duration, must have an integer and unit: {d}"
            )));
        }
    }
    let interval: i64 = d[..unit]
        .parse()
        .map_err(|_| QueryError::bad(format!("Invalid duration (number): {d}")))?;
    if interval <= 0 {
        return Err(QueryError::bad(format!("Zero or negative duration: {d}")));
    }
    // `unit < len` here, so the last byte exists; it is ASCII when valid.
    let last = bytes[bytes.len() - 1].to_ascii_lowercase();
    let unit_ms: i64 = match last {
        // OpenTSDB checks the `m` of `ms` case-sensitively.
        b's' if bytes.len() >= 2 && bytes[bytes.len() - 2] == b'm' => return Ok(interval),
        b's' => SECOND_MS,
        b'm' => MINUTE_MS,
        b'h' => HOUR_MS,
        b'd' => DAY_MS,
        b'w' => 7 * DAY_MS,
        b'n' => 30 * DAY_MS,
        b'y' => 365 * DAY_MS,
        _ => return Err(QueryError::bad(format!("Invalid duration (suffix): {d}"))),
    };
    interval
        .checked_mul(unit_ms)
        .ok_or_else(|| QueryError::bad(format!("Duration must be < Long.MAX_VALUE ms: {d}")))
}

/// A duration in ms the way an operator writes it, in its largest whole
/// unit: `2d`, `1h`, `90m`, `61s`, `1500ms`. [`parse_duration`] reads it
/// back.
pub fn duration_text(ms: i64) -> String {
    let units = [
        (DAY_MS, "d"),
        (HOUR_MS, "h"),
        (MINUTE_MS, "m"),
        (SECOND_MS, "s"),
    ];
    match units.iter().find(|(unit, _)| ms % unit == 0) {
        Some((unit, suffix)) => format!("{}{suffix}", ms / unit),
        None => format!("{ms}ms"),
    }
}

/// The absolute forms, picked by length as OpenTSDB does.
fn parse_absolute(s: &str, tz: Tz) -> Result<i64, QueryError> {
    let fields = match s.chars().count() {
        10 => 3,
        16 => 5,
        19 => 6,
        _ => return Err(QueryError::bad(format!("Invalid absolute date: {s}"))),
    };
    let unparseable = || QueryError::bad(format!("Invalid date: {s}. Unparseable date: \"{s}\""));
    let date_time_sep = if s.contains('-') { '-' } else { ' ' };
    let separators = ['/', '/', date_time_sep, ':', ':'];
    let mut values = [0i64; 6];
    let mut rest = s;
    for (i, value) in values.iter_mut().enumerate().take(fields) {
        if i > 0 {
            rest = rest
                .strip_prefix(separators[i - 1])
                .ok_or_else(unparseable)?;
        }
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(unparseable());
        }
        *value = rest[..end].parse().map_err(|_| unparseable())?;
        rest = &rest[end..];
    }
    // Like `SimpleDateFormat.parse(String)`, trailing text is ignored.
    let [year, month, day, hour, minute, second] = values;
    let local = lenient_local(year, month, day, hour, minute, second).ok_or_else(unparseable)?;
    Ok(local_to_epoch_ms(tz, local))
}

/// A lenient calendar: out-of-range fields roll over into the next larger
/// one (month 13 is January of the next year, day 0 the last of the month
/// before), as a lenient `java.util.Calendar` does.
fn lenient_local(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> Option<NaiveDateTime> {
    let months = year.checked_mul(12)?.checked_add(month - 1)?;
    let y = i32::try_from(months.div_euclid(12)).ok()?;
    let m = u32::try_from(months.rem_euclid(12) + 1).ok()?;
    let first = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
    first
        .checked_add_signed(Duration::try_days(day - 1)?)?
        .checked_add_signed(Duration::try_hours(hour)?)?
        .checked_add_signed(Duration::try_minutes(minute)?)?
        .checked_add_signed(Duration::try_seconds(second)?)
}

/// The wall-clock time of `ms` in `tz`.
pub(crate) fn epoch_ms_to_local(tz: Tz, ms: i64) -> NaiveDateTime {
    match tz.timestamp_millis_opt(ms).single() {
        Some(t) => t.naive_local(),
        None => chrono::DateTime::UNIX_EPOCH.naive_utc(),
    }
}

/// The instant of a wall-clock time in `tz`, with `GregorianCalendar`'s
/// rules for gaps (offset before the change) and overlaps (later instant).
pub(crate) fn local_to_epoch_ms(tz: Tz, local: NaiveDateTime) -> i64 {
    use chrono::LocalResult;
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(a, b) => a.timestamp_millis().max(b.timestamp_millis()),
        LocalResult::None => {
            // A day earlier is safely before the transition that made the
            // gap: transitions are months apart and offsets under a day.
            let before = local.and_utc() - Duration::days(1);
            let offset = tz.offset_from_utc_datetime(&before.naive_utc()).fix();
            (local - Duration::seconds(i64::from(offset.local_minus_utc())))
                .and_utc()
                .timestamp_millis()
        }
    }
}

/// Calendar units of `<n><unit>c` downsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarUnit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl CalendarUnit {
    /// The length of the units `java.util.Calendar` adds as plain
    /// milliseconds; `None` for the ones that follow the wall clock.
    pub(crate) fn fixed_ms(self) -> Option<i64> {
        match self {
            CalendarUnit::Millisecond => Some(1),
            CalendarUnit::Second => Some(SECOND_MS),
            CalendarUnit::Minute => Some(MINUTE_MS),
            CalendarUnit::Hour => Some(HOUR_MS),
            _ => None,
        }
    }
}

/// `DateTime.previousInterval`: the start of the `n`-`unit` calendar
/// interval holding `ts` in `tz`. OpenTSDB counts intervals from the top of
/// the next larger unit when `n` divides it (from the top of the minute for
/// seconds, of the day for hours, ...) and from the one above otherwise;
/// weeks start on Sunday and are always stepped one week at a time here.
pub(crate) fn previous_interval(ts: i64, n: u32, unit: CalendarUnit, tz: Tz) -> i64 {
    let local = epoch_ms_to_local(tz, ts);
    let date = local.date();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or(local);
    let top_of_month = midnight(date.with_day(1).unwrap_or(date));
    let top_of_year = midnight(
        date.with_day(1)
            .and_then(|d| d.with_month(1))
            .unwrap_or(date),
    );
    let truncate = |step_ms: i64| {
        let since_midnight = (local - midnight(date)).num_milliseconds();
        midnight(date) + Duration::milliseconds(since_midnight - since_midnight % step_ms)
    };
    let divides = |whole: u32| whole % n == 0;
    let base_local = match unit {
        CalendarUnit::Millisecond if divides(1000) => truncate(SECOND_MS),
        CalendarUnit::Millisecond => truncate(MINUTE_MS),
        CalendarUnit::Second if divides(60) => truncate(MINUTE_MS),
        CalendarUnit::Second => truncate(HOUR_MS),
        CalendarUnit::Minute if divides(60) => truncate(HOUR_MS),
        CalendarUnit::Minute => midnight(date),
        CalendarUnit::Hour if divides(24) => midnight(date),
        CalendarUnit::Hour => top_of_month,
        CalendarUnit::Day if n == 1 => top_of_month,
        CalendarUnit::Week => {
            let back = i64::from(date.weekday().num_days_from_sunday());
            midnight(date - Duration::days(back))
        }
        CalendarUnit::Day | CalendarUnit::Month | CalendarUnit::Year => top_of_year,
    };
    let base = local_to_epoch_ms(tz, base_local);
    if base >= ts {
        // Equal in all but a midnight DST gap, where the base lands after
        // `ts`; the interval then starts at `ts` itself.
        return ts;
    }
    let (step_n, step_unit) = match unit {
        CalendarUnit::Week => (7, CalendarUnit::Day),
        _ => (n, unit),
    };
    if let Some(unit_ms) = step_unit.fixed_ms() {
        let step = unit_ms * i64::from(step_n);
        return base + (ts - base) / step * step;
    }
    let mut start = base;
    loop {
        let next = add_calendar(start, step_n, step_unit, tz);
        if next > ts || next <= start {
            return start;
        }
        start = next;
    }
}

/// `Calendar.add(unit, n)`: fixed-length units add milliseconds, the others
/// move the wall clock (a calendar day across a DST change is 23 or 25 h).
pub(crate) fn add_calendar(ts: i64, n: u32, unit: CalendarUnit, tz: Tz) -> i64 {
    if let Some(unit_ms) = unit.fixed_ms() {
        return ts + unit_ms * i64::from(n);
    }
    let local = epoch_ms_to_local(tz, ts);
    let moved = match unit {
        CalendarUnit::Day => local.checked_add_days(chrono::Days::new(u64::from(n))),
        CalendarUnit::Week => local.checked_add_days(chrono::Days::new(7 * u64::from(n))),
        CalendarUnit::Month => local.checked_add_months(chrono::Months::new(n)),
        _ => local.checked_add_months(chrono::Months::new(n.saturating_mul(12))),
    };
    match moved {
        Some(local) => local_to_epoch_ms(tz, local),
        None => i64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_123;

    fn ok(s: &str) -> i64 {
        parse_time(s, NOW, None).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match parse_time(s, NOW, None) {
            Ok(v) => panic!("{s} parsed as {v}"),
            Err(e) => {
                assert_eq!(e.status(), 400);
                e.message()
            }
        }
    }

    #[test]
    fn durations_are_written_in_the_largest_whole_unit() {
        assert_eq!(duration_text(3_600_000), "1h");
        assert_eq!(duration_text(2 * 86_400_000), "2d");
        assert_eq!(duration_text(5_400_000), "90m");
        assert_eq!(duration_text(61_000), "61s");
        assert_eq!(duration_text(1500), "1500ms");
        for text in ["2d", "90m", "61s", "1500ms"] {
            assert_eq!(duration_text(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn relative_and_epoch_forms() {
        let cases: &[(&str, i64)] = &[
            ("now", NOW),
            ("NOW", NOW),
            ("1h-ago", NOW - 3_600_000),
            ("1H-AGO", NOW - 3_600_000),
            ("1.5h-ago", NOW - 3_600_000),
            ("30s-ago", NOW - 30_000),
            ("250ms-ago", NOW - 250),
            ("2d-ago", NOW - 2 * 86_400_000),
            ("1w-ago", NOW - 604_800_000),
            ("1n-ago", NOW - 2_592_000_000),
            ("1y-ago", NOW - 31_536_000_000),
            ("1356998400", 1_356_998_400_000),
            ("1356998400000", 1_356_998_400_000),
            ("1356998400123ms", 1_356_998_400_123),
            ("1356998400.5", 1_356_998_400_500),
            ("1356998400.05", 1_356_998_400_050),
            ("1356998400.123", 1_356_998_400_123),
            // Eleven characters: milliseconds, the sign counts.
            ("+1356998400", 1_356_998_400),
            ("0", 0),
            ("12345678901", 12_345_678_901),
        ];
        for &(s, want) in cases {
            assert_eq!(ok(s), want, "{s}");
        }
    }

    #[test]
    fn absolute_forms_in_utc_and_in_a_zone() {
        let cases: &[(&str, i64)] = &[
            ("2013/01/01", 1_356_998_400_000),
            ("2013/01/01-01:02", 1_357_002_120_000),
            ("2013/01/01 01:02", 1_357_002_120_000),
            ("2013/01/01-01:02:03", 1_357_002_123_000),
            ("2013/01/01 01:02:03", 1_357_002_123_000),
            // Lenient: month 13 is January of the next year, day 0 the last
            // day of the month before.
            ("2012/13/01", 1_356_998_400_000),
            ("2013/02/00", 1_359_590_400_000),
            ("2012/12/31-24:00", 1_356_998_400_000),
        ];
        for &(s, want) in cases {
            assert_eq!(ok(s), want, "{s}");
        }
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            parse_time("2013/01/01", NOW, Some(ny)).unwrap(),
            1_357_016_400_000
        );
        // 02:30 does not exist on 2024-03-10 in New York: read with EST.
        assert_eq!(
            parse_time("2024/03/10-02:30", NOW, Some(ny)).unwrap(),
            1_710_055_800_000
        );
        // 01:30 happens twice on 2024-11-03: the later (EST) one.
        assert_eq!(
            parse_time("2024/11/03-01:30", NOW, Some(ny)).unwrap(),
            1_730_615_400_000
        );
    }

    #[test]
    fn error_texts() {
        let cases: &[(&str, &str)] = &[
            ("2013/1/1", "Invalid absolute date: 2013/1/1"),
            ("12:00", "Invalid absolute date: 12:00"),
            (
                "2013-01-01 12:00",
                "Invalid date: 2013-01-01 12:00. Unparseable date: \"2013-01-01 12:00\"",
            ),
            (
                "2013/aa/01",
                "Invalid date: 2013/aa/01. Unparseable date: \"2013/aa/01\"",
            ),
            (
                "-1",
                "Invalid time: -1. Negative timestamps are not supported.",
            ),
            ("abc", "Invalid time: abc. Invalid character 'a' in abc"),
            ("", "Invalid time: . Empty string"),
            ("+", "Invalid time: +. Just a sign, no value: +"),
            (
                "12345678901234567890",
                "Invalid time: 12345678901234567890. Value too long: 12345678901234567890",
            ),
            (
                "9999999999999999999",
                "Invalid time: 9999999999999999999. Overflow in 9999999999999999999",
            ),
            (
                "1356998400.1234",
                "Invalid time: 1356998400.1234. Millisecond timestamps must be in the format \
                 <seconds>.<ms> where the milliseconds are limited to 3 digits",
            ),
            (
                "135699840.5",
                "Invalid time: 135699840.5. Millisecond timestamps must be in the format \
                 <seconds>.<ms> where the milliseconds are limited to 3 digits",
            ),
            ("1x-ago", "Invalid duration (suffix): 1x"),
            ("h-ago", "Invalid duration (number): h"),
            ("0h-ago", "Zero or negative duration: 0h"),
            (
                "10-ago",
                "Invalid duration, must have an integer and unit: 10",
            ),
            ("-ago", "Invalid duration (number): "),
            (
                "99999999999999999999h-ago",
                "Invalid duration (number): 99999999999999999999h",
            ),
            (
                "9999999999999999y-ago",
                "Duration must be < Long.MAX_VALUE ms: 9999999999999999y",
            ),
        ];
        for &(s, want) in cases {
            assert_eq!(err(s), want, "{s}");
        }
    }

    #[test]
    fn durations() {
        let cases: &[(&str, i64)] = &[
            ("1ms", 1),
            ("5s", 5_000),
            ("1m", 60_000),
            ("1M", 60_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1n", 2_592_000_000),
            ("1y", 31_536_000_000),
            ("1.5h", 3_600_000),
            // OpenTSDB compares the `m` of `ms` case-sensitively.
            ("1MS", 1_000),
        ];
        for &(s, want) in cases {
            assert_eq!(parse_duration(s).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn calendar_intervals_follow_the_wall_clock() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2024-03-10 12:00 EDT; the day started at 00:00 EST = 05:00Z.
        let noon = 1_710_086_400_000;
        let day = previous_interval(noon, 1, CalendarUnit::Day, ny);
        assert_eq!(day, 1_710_046_800_000);
        // That day is 23 hours long.
        assert_eq!(
            add_calendar(day, 1, CalendarUnit::Day, ny) - day,
            23 * HOUR_MS
        );
        // Hours in UTC from the top of the day: 16:00Z is in 12:00-18:00.
        assert_eq!(
            previous_interval(noon + 1, 6, CalendarUnit::Hour, Tz::UTC),
            noon - 4 * HOUR_MS
        );
        // Weeks start on Sunday: 2024-03-10 is one.
        assert_eq!(previous_interval(noon, 1, CalendarUnit::Week, ny), day);
        // Months from the top of the year.
        let feb15 = 1_707_955_200_000; // 2024-02-15T00:00Z
        assert_eq!(
            previous_interval(feb15, 1, CalendarUnit::Month, Tz::UTC),
            1_706_745_600_000
        );
        // 7 minutes do not divide an hour: counted from the top of the day.
        let t = 1_704_067_200_000 + 50 * MINUTE_MS; // 2024-01-01T00:50Z
        assert_eq!(
            previous_interval(t, 7, CalendarUnit::Minute, Tz::UTC),
            1_704_067_200_000 + 49 * MINUTE_MS
        );
        assert_eq!(
            previous_interval(t, 1, CalendarUnit::Year, Tz::UTC),
            1_704_067_200_000
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_time_never_panics(s in "\\PC{0,24}") {
            let _ = parse_time(&s, NOW, None);
        }

        #[test]
        fn time_like_strings_never_panic(s in "[0-9/: .+-]{0,20}(ms|-ago|h-ago)?") {
            let _ = parse_time(&s, NOW, Some("Asia/Kolkata".parse().unwrap()));
        }
    }
}
