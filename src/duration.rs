//! Durations on the command line: `300ms`, `2s`, `1.5s`, `1m`.

use std::time::Duration;

/// The longest duration any flag accepts: one day. Longer waits are a typo, not a plan.
pub const MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `300ms`, `2s`, `1.5s`, `1m` (1 ms to 24 h). Use it as a clap `value_parser`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, Duration::from_millis(1), MAX)
}

/// Parses a duration and checks it lies in `min..=max`.
pub fn parse_duration_in(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 300ms, 2s or 1m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "" if value == 0.0 => 0.0,
        "" => return Err(format!("{s:?} needs a unit: ms, s, m or h (e.g. 300ms)")),
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?}; use ms, s, m or h (e.g. 300ms)"
            ))
        }
    };
    if !secs.is_finite() || secs < min.as_secs_f64() || secs > max.as_secs_f64() {
        return Err(format!(
            "{s:?} is out of range: {} to {}",
            show(min),
            show(max)
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.as_secs() % 3600 == 0 {
        format!("{}h", d.as_secs() / 3600)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn errors_say_what_is_accepted() {
        assert!(parse_duration("2").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("2days")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("fast").unwrap_err().contains("e.g. 300ms"));
        assert!(parse_duration("0s").unwrap_err().contains("out of range"));
        assert!(parse_duration("25h").unwrap_err().contains("1ms to 24h"));
    }
}
