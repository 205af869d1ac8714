//! Prometheus's duration syntax (`model.Duration`), used by the Prometheus `config:` block
//! (`scrape_interval: 1m`, `30s`, `1d`, `1h30m`) and by the seeded `__scrape_interval__` and
//! `__scrape_timeout__` labels, which must read exactly as Prometheus writes them (`1m`, not
//! Go's `1m0s`).
//!
//! Grammar: `0`, or units in decreasing order, each at most once, integers only:
//! `[0-9]+y`, `w`, `d`, `h`, `m`, `s`, `ms` (a year is 365 days).

use std::time::Duration;

const MS: u128 = 1;
const UNITS: [(&str, u128); 7] = [
    ("y", 365 * 24 * 3600 * 1000 * MS),
    ("w", 7 * 24 * 3600 * 1000 * MS),
    ("d", 24 * 3600 * 1000 * MS),
    ("h", 3600 * 1000 * MS),
    ("m", 60 * 1000 * MS),
    ("s", 1000 * MS),
    ("ms", MS),
];

/// Why a Prometheus duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid Prometheus duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parse `1m`, `30s`, `1h30m`, `2d`, `0`...
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(fail("empty"));
    }
    let mut rest = input;
    let mut next_unit = 0;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("expected a whole number before each unit"));
        }
        let (number, after) = rest.split_at(digits);
        // "ms" must be tried before "m".
        let position = UNITS[next_unit..]
            .iter()
            .enumerate()
            .filter(|(_, (unit, _))| after.starts_with(unit))
            .max_by_key(|(_, (unit, _))| unit.len())
            .map(|(offset, _)| next_unit + offset)
            .ok_or_else(|| fail("units must be y, w, d, h, m, s, ms, largest first, each once"))?;
        let (unit, scale) = UNITS[position];
        let value: u128 = number.parse().map_err(|_| fail("number too large"))?;
        total = value
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .filter(|t| *t <= i64::MAX as u128 / 1_000_000)
            .ok_or_else(|| fail("too large"))?;
        rest = &after[unit.len()..];
        next_unit = position + 1;
    }
    Ok(Duration::from_millis(total as u64))
}

/// Format as Prometheus does: `0s`, `30s`, `1m`, `1m30s`, `1h`, `1d`, `1w`, `500ms`.
pub fn format(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, scale) in UNITS {
        let count = millis / scale;
        if count > 0 {
            out.push_str(&format!("{count}{unit}"));
            millis -= count * scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn parses_prometheus_durations() {
        for (input, expected) in [
            ("0", Duration::ZERO),
            ("30s", s(30)),
            ("1m", s(60)),
            ("1m30s", s(90)),
            ("1h30m", s(5400)),
            ("2d", s(2 * 86400)),
            ("1w", s(7 * 86400)),
            ("1y", s(365 * 86400)),
            ("500ms", Duration::from_millis(500)),
            ("1s500ms", Duration::from_millis(1500)),
            (
                "1y2w3d4h5m6s7ms",
                Duration::from_millis(((((365 + 14 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * 1000 + 7),
            ),
        ] {
            assert_eq!(parse(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        for input in [
            "",
            "1",
            "1.5s",
            "s",
            "30x",
            "1s1m",
            "1m1m",
            "-1s",
            " 1s",
            "1 s",
            "1us",
            "99999999999999y",
        ] {
            assert!(parse(input).is_err(), "{input} was accepted");
        }
    }

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(s(30)), "30s");
        assert_eq!(format(s(60)), "1m");
        assert_eq!(format(s(90)), "1m30s");
        assert_eq!(format(s(3600)), "1h");
        assert_eq!(format(s(86400)), "1d");
        assert_eq!(format(s(7 * 86400)), "1w");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
    }
}
