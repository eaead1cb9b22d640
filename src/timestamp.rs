//! RFC 3339 time stamps in UTC, to the second (`2026-11-30T09:15:02Z`), with `jiff`: the times
//! of journal records, lock holders and exports. The format is part of the records, which are
//! checksummed and read back: it never changes (no fraction, always `Z`).

/// The system clock's time, RFC 3339 UTC to the second.
pub fn utc_now() -> String {
    rfc3339_utc(jiff::Timestamp::now().as_second())
}

/// `seconds` since the Unix epoch, RFC 3339 UTC to the second.
pub fn rfc3339_utc(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(time) => time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        // Outside jiff's range (years -9999 to 9999): a clock that wrong shows as the epoch's
        // neighbour it is not; the record keeps its order by sequence, not by time.
        Err(_) => "1970-01-01T00:00:00Z".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_of_the_records() {
        for (seconds, shown) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_796_036_102, "2026-11-30T10:55:02Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
            (253_402_128_000, "9999-12-30T00:00:00Z"),
        ] {
            assert_eq!(rfc3339_utc(seconds), shown);
        }
    }

    /// The hand-written days-from-civil of the journal (until it calls this) gives the same
    /// bytes for the same second.
    #[test]
    fn the_same_as_the_journals_own_clock() {
        for _ in 0..3 {
            let (before, ours, journal) = (utc_now(), utc_now(), crate::apply::journal::utc_now());
            if before == journal {
                assert_eq!(ours, journal);
                return;
            }
        }
        panic!("the two clocks never agreed within one second");
    }
}
