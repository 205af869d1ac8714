//! Go's `time.ParseDuration` syntax, which upstream's `targetallocator.yaml` uses for its own
//! durations (`collector_not_ready_grace_period: 30s`, `1m30s`, `1.5h`; Prometheus-style `1d`
//! is not accepted there; docs/compatibility.md, "Durations"). Prometheus fields inside
//! `config:` use Prometheus's own duration syntax instead.
//!
//! Grammar: `[-+]?([0-9]*(\.[0-9]*)?unit)+` or a bare `0`, with units `ns`, `us`, `µs`, `μs`,
//! `ms`, `s`, `m`, `h`. Negative durations parse in Go; a config duration cannot be negative,
//! so they are an error here.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parse a Go duration such as `30s`, `1m30s`, `1.5h` or `0`.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let mut rest = input;
    let negative = match rest.as_bytes().first() {
        Some(b'-') => {
            rest = &rest[1..];
            true
        }
        Some(b'+') => {
            rest = &rest[1..];
            false
        }
        _ => false,
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(fail("empty"));
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(digits);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(tail) => {
                let count = tail.bytes().take_while(u8::is_ascii_digit).count();
                tail.split_at(count)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(fail("expected a number"));
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(fail("missing unit (ns, us, ms, s, m, h)"));
        }
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| fail("unknown unit (ns, us, ms, s, m, h)"))?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| fail("number too large"))?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(|| fail("too large"))?;
        // Like Go, the fraction contributes only the digits that still matter at this scale.
        let mut place = scale;
        for digit in fraction.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * place;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| fail("too large"))?;
        if total_nanos > i64::MAX as u128 {
            return Err(fail("too large (Go durations end at about 292 years)"));
        }
        rest = after;
    }
    if negative && total_nanos > 0 {
        return Err(fail("negative durations are not allowed"));
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Format like Go's `Duration.String()` for the values configs use (`30s`, `1m30s`, `1h0m0s`,
/// `500ms`).
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = if nanos < 1_000 {
            (nanos as f64, "ns")
        } else if nanos < 1_000_000 {
            (nanos as f64 / 1e3, "µs")
        } else {
            (nanos as f64 / 1e6, "ms")
        };
        return format!("{}{unit}", trim(value));
    }
    let seconds = nanos as f64 / 1e9;
    let hours = (seconds / 3600.0).floor();
    let minutes = ((seconds - hours * 3600.0) / 60.0).floor();
    let rest = seconds - hours * 3600.0 - minutes * 60.0;
    if hours > 0.0 {
        format!("{hours}h{minutes}m{}s", trim(rest))
    } else if minutes > 0.0 {
        format!("{minutes}m{}s", trim(rest))
    } else {
        format!("{}s", trim(rest))
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.9}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepts_what_go_accepts() {
        let cases = [
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("500ms", ms(500)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("1.0000000009s", Duration::from_secs(1)),
            ("2562047h", Duration::from_secs(2562047 * 3600)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        for input in [
            "",
            "s",
            "1",
            "1d",
            "1w",
            "1y",
            ".s",
            "1.2.3s",
            "3x",
            "1m-2s",
            "-1s",
            "- 1s",
            " 1s",
            "1 s",
            "9999999999999h",
        ] {
            let err = parse(input).expect_err(input);
            assert_eq!(err.input, input);
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(ms(500)), "500ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn round_trips() {
        for text in ["30s", "1m30s", "1h0m0s", "500ms", "1.5s", "2h45m10s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
