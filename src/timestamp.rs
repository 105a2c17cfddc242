//! Trinity's timestamps: parsing every form its database holds, and writing the backend's own form.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses `started_at` / `completed_at` as Trinity writes them: RFC 3339 with `Z` or an offset,
/// or naive (meaning UTC), with or without fractional seconds, with `T` or a space between date
/// and time. Anything else is `None`: the caller decides what an unknown time means.
pub(crate) fn parse(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.len() < 19 {
        return None;
    }
    let normalized = match text.as_bytes()[10] {
        b' ' => format!("{}T{}", &text[..10], &text[11..]),
        _ => text.to_owned(),
    };
    if let Ok(parsed) = DateTime::parse_from_rfc3339(&normalized) {
        return Some(parsed.with_timezone(&Utc));
    }
    // PostgreSQL's text form of timestamptz: `2026-04-03 14:16:48.123456+00`.
    if let Ok(parsed) = DateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f%#z") {
        return Some(parsed.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Formats a time the way Trinity's backend writes `completed_at`: `%Y-%m-%dT%H:%M:%S.%6fZ`.
pub(crate) fn format(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A whole number of seconds for people: `1h1s`, `10m`, `45s`; negative counts as zero.
pub(crate) fn human_duration(seconds: i64) -> String {
    let seconds = u64::try_from(seconds).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(seconds))
        .to_string()
        .replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(h: u32, m: u32, s: u32, micros: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 3, h, m, s).unwrap()
            + chrono::Duration::microseconds(i64::from(micros))
    }

    #[test]
    fn parses_every_form_trinity_writes() {
        let expected = utc(14, 16, 48, 123_456);
        for text in [
            "2026-04-03T14:16:48.123456Z",
            "2026-04-03T14:16:48.123456",
            "2026-04-03 14:16:48.123456",
            "2026-04-03T14:16:48.123456+00:00",
            "2026-04-03T16:16:48.123456+02:00",
            " 2026-04-03T14:16:48.123456Z ",
            "2026-04-03 14:16:48.123456+00",
            "2026-04-03 16:16:48.123456+02",
        ] {
            assert_eq!(parse(text), Some(expected), "{text}");
        }
        assert_eq!(parse("2026-04-03T14:16:48"), Some(utc(14, 16, 48, 0)));
        assert_eq!(parse("2026-04-03 14:16:48"), Some(utc(14, 16, 48, 0)));
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "yesterday",
            "2026-04-03",
            "2026-13-03T14:16:48",
            "2026-04-03X14:16:48",
            "2026-04-03T14:16:48é",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(3601), "1h1s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(-5), "0s");
    }

    #[test]
    fn formats_like_the_backend_and_round_trips() {
        let time = utc(14, 16, 48, 123_456);
        assert_eq!(format(time), "2026-04-03T14:16:48.123456Z");
        assert_eq!(parse(&format(time)), Some(time));
    }
}
