//! Timestamps: when the store recorded an event.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant with microsecond precision, counted from the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A string that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0}")]
pub struct InvalidTimestamp(String);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// The current time from the system clock. The store takes its time from a clock it is
    /// given, so tests can use a fixed one.
    pub fn now() -> Self {
        Self::from(OffsetDateTime::now_utc())
    }

    pub fn to_offset_date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .expect("an i64 of microseconds is within time's range with large-dates")
    }

    /// RFC 3339 in UTC with milliseconds, for example `2026-11-23T10:15:00.123Z`.
    pub fn to_rfc3339_millis(self) -> String {
        let t = self.to_offset_date_time();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }

    /// RFC 3339 in UTC with microseconds, the store's precision, for example
    /// `2026-11-23T10:15:00.123456Z`: it parses back to the same value.
    pub fn to_rfc3339_micros(self) -> String {
        let t = self.to_offset_date_time();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }

    pub fn parse_rfc3339(s: &str) -> Result<Self, InvalidTimestamp> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from)
            .map_err(|e| InvalidTimestamp(format!("{s:?} ({e})")))
    }

    /// Parses an RFC 3339 time that bounds a read ("as of this time"). A time written with at
    /// most three fractional digits means the end of that millisecond: `recordedAt` is shown
    /// with milliseconds while the store keeps microseconds, so "as of an event's recordedAt"
    /// must include every event recorded within that millisecond. More digits are taken as
    /// they are, to the microsecond.
    pub fn parse_rfc3339_bound(s: &str) -> Result<Self, InvalidTimestamp> {
        let t = Self::parse_rfc3339(s)?;
        // RFC 3339 has one `.`, before the fractional seconds.
        let fraction_digits = s.split_once('.').map_or(0, |(_, rest)| {
            rest.bytes().take_while(u8::is_ascii_digit).count()
        });
        Ok(if fraction_digits <= 3 {
            Self(t.0.saturating_add(999))
        } else {
            t
        })
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        let micros = t.unix_timestamp_nanos() / 1000;
        Self(i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX }))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339_millis())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339_millis())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.to_rfc3339_millis())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_timestamps_format_without_panicking() {
        for micros in [i64::MIN, -1, 0, i64::MAX] {
            let t = Timestamp::from_unix_micros(micros);
            assert!(!t.to_rfc3339_millis().is_empty());
            assert!(!format!("{t:?}").is_empty());
        }
    }

    #[test]
    fn bounds_with_milliseconds_mean_the_end_of_the_millisecond() {
        let ms = Timestamp::parse_rfc3339_bound("2026-01-02T03:04:05.123Z").unwrap();
        let exact = Timestamp::parse_rfc3339("2026-01-02T03:04:05.123Z").unwrap();
        assert_eq!(ms.unix_micros(), exact.unix_micros() + 999);
        let us = Timestamp::parse_rfc3339_bound("2026-01-02T03:04:05.123456Z").unwrap();
        assert_eq!(us.unix_micros(), exact.unix_micros() + 456);
        assert!(Timestamp::parse_rfc3339_bound("yesterday").is_err());
    }

    #[test]
    fn rfc3339_round_trip_at_millisecond_precision() {
        let t = Timestamp::parse_rfc3339("2026-11-23T10:15:00.123Z").unwrap();
        assert_eq!(t.to_rfc3339_millis(), "2026-11-23T10:15:00.123Z");
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_rfc3339_millis(),
            "1970-01-01T00:00:00.000Z"
        );
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn rfc3339_micros_round_trips_exactly() {
        for micros in [0, 1, 1_795_000_000_123_456, -1_000_001] {
            let t = Timestamp::from_unix_micros(micros);
            let text = t.to_rfc3339_micros();
            assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), t, "{text}");
        }
    }
}
