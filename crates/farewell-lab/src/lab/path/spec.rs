//! What path to make: its kind, its settings, how it is written on a
//! command line, and how it is described to people.

use std::fmt;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use super::super::netns;

/// The kinds of path, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// 127.0.0.1: no namespaces, no rate limit, no delay, no loss.
    Loopback,
    /// A rate-limited veth pair between two namespaces ([`Slow`]).
    Slow,
    /// Round-trip time and random loss through a middle namespace ([`Wan`]).
    Wan,
}

impl PathKind {
    /// Every kind, in order.
    pub const ALL: [PathKind; 3] = [PathKind::Loopback, PathKind::Slow, PathKind::Wan];

    /// The name the command line and the reports use.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Loopback => "loopback",
            PathKind::Slow => "slow",
            PathKind::Wan => "wan",
        }
    }

    /// `None` when this process can make a path of this kind, or why not
    /// (privileges first, then the missing tool and its Debian package).
    pub fn unavailable(self) -> Option<String> {
        if self == PathKind::Loopback {
            return None;
        }
        if let Some(why) = netns::unavailable() {
            return Some(why);
        }
        if !runs("tc", "-V") {
            return Some("needs the tc tool (Debian package iproute2)".to_owned());
        }
        if self == PathKind::Wan && !runs("nft", "--version") {
            return Some("needs the nft tool (Debian package nftables)".to_owned());
        }
        None
    }
}

/// Whether `program arg` runs and succeeds.
fn runs(program: &str, arg: &str) -> bool {
    let _forking = netns::no_forks();
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|out| out.status.success())
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A path written wrongly: an unknown kind, setting or value. The message
/// says which, in lowercase, for a command line to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathSpecError(String);

impl FromStr for PathKind {
    type Err = PathSpecError;

    fn from_str(s: &str) -> Result<PathKind, PathSpecError> {
        PathKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| {
                PathSpecError(format!("unknown path {s:?} (known: loopback, slow, wan)"))
            })
    }
}

/// A `slow` path: rate-limited both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slow {
    /// Bits per second in each direction (htb; whole frames count, headers too).
    pub rate: u64,
    /// Frames each direction's queue holds before it drops (pfifo).
    pub queue: u32,
}

impl Default for Slow {
    /// 4 Mbit/s each way (1 MiB takes a little over 2 s), a 32-frame queue
    /// (about 100 ms at that rate).
    fn default() -> Slow {
        Slow {
            rate: 4_000_000,
            queue: 32,
        }
    }
}

/// A `wan` path: round-trip time and random loss, optionally a rate limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wan {
    /// How long the forwarder holds each frame, in each direction (the
    /// round-trip time is twice this, and a little more).
    pub delay: Duration,
    /// Percent of IPv4 frames dropped at random, in each direction (0 to 100;
    /// the kernel draws in steps of 0.01%).
    pub loss_percent: f64,
    /// A rate limit in bits per second in each direction, as [`Slow::rate`]
    /// (on the server's and client's ends), or none.
    pub rate: Option<u64>,
}

impl Default for Wan {
    /// 20 ms each way (40 ms round trip), 1% loss each way, no rate limit.
    fn default() -> Wan {
        Wan {
            delay: Duration::from_millis(20),
            loss_percent: 1.0,
            rate: None,
        }
    }
}

/// What path to make, with its settings.
///
/// # Syntax
///
/// A kind, optionally followed by `:` and `key=value` settings separated by
/// commas; what is not given keeps its default ([`Slow::default`],
/// [`Wan::default`]). `Display` writes every setting, in this syntax.
///
/// ```text
/// loopback
/// slow                                  4 Mbit/s each way, 32-frame queue
/// slow:rate=500kbit,queue=16
/// wan                                   20 ms each way, 1% loss each way
/// wan:delay=50ms,loss=2%,rate=10mbit
/// ```
///
/// Rates are bits per second with tc's decimal units (`bit`, `kbit`,
/// `mbit`, `gbit`); delays take `us`, `ms` or `s`; a loss is a percentage,
/// the `%` optional.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum PathSpec {
    /// See [`PathKind::Loopback`].
    Loopback,
    /// See [`Slow`].
    Slow(Slow),
    /// See [`Wan`].
    Wan(Wan),
}

impl PathSpec {
    /// The kind of path.
    pub fn kind(&self) -> PathKind {
        match self {
            PathSpec::Loopback => PathKind::Loopback,
            PathSpec::Slow(_) => PathKind::Slow,
            PathSpec::Wan(_) => PathKind::Wan,
        }
    }

    /// How the path is made, for people (a report's header).
    pub fn mechanism(&self) -> String {
        match self {
            PathSpec::Loopback => "127.0.0.1 (no rate limit, delay or loss)".to_owned(),
            PathSpec::Slow(slow) => format!(
                "veth + htb {} each way, {}-frame queue",
                rate_text(slow.rate),
                slow.queue
            ),
            PathSpec::Wan(wan) => {
                let mut text = format!(
                    "veth + user-space forwarder {} ms each way",
                    millis(wan.delay)
                );
                if wan.loss_percent > 0.0 {
                    text.push_str(&format!(
                        " + nftables {}% random drop each way",
                        wan.loss_percent
                    ));
                }
                if let Some(rate) = wan.rate {
                    text.push_str(&format!(" + htb {} each way", rate_text(rate)));
                }
                text
            }
        }
    }

    /// An error when a setting cannot be made.
    pub(super) fn validate(&self) -> Result<(), PathSpecError> {
        let bad = |what: &str| Err(PathSpecError(what.to_owned()));
        match self {
            PathSpec::Loopback => Ok(()),
            PathSpec::Slow(slow) if slow.rate == 0 => bad("a slow path's rate must be above 0"),
            PathSpec::Slow(slow) if slow.queue == 0 => bad("a slow path's queue must hold a frame"),
            PathSpec::Slow(_) => Ok(()),
            PathSpec::Wan(wan) if !(0.0..=100.0).contains(&wan.loss_percent) => {
                bad("a wan path's loss must be between 0 and 100 percent")
            }
            PathSpec::Wan(wan) if wan.rate == Some(0) => bad("a wan path's rate must be above 0"),
            PathSpec::Wan(_) => Ok(()),
        }
    }
}

impl From<PathKind> for PathSpec {
    /// The kind with its default settings.
    fn from(kind: PathKind) -> PathSpec {
        match kind {
            PathKind::Loopback => PathSpec::Loopback,
            PathKind::Slow => PathSpec::Slow(Slow::default()),
            PathKind::Wan => PathSpec::Wan(Wan::default()),
        }
    }
}

/// `d` in milliseconds to the microsecond, no needless decimals: "20", "0.5".
fn millis(d: Duration) -> String {
    let ms = format!("{:.3}", d.as_secs_f64() * 1e3);
    ms.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl fmt::Display for PathSpec {
    /// The spec in the syntax `parse` reads (see [`PathSpec`]), every setting written:
    /// `slow:rate=4mbit,queue=32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSpec::Loopback => f.write_str("loopback"),
            PathSpec::Slow(slow) => write!(f, "slow:rate={}bit,queue={}", slow.rate, slow.queue),
            PathSpec::Wan(wan) => {
                write!(
                    f,
                    "wan:delay={}ms,loss={}%",
                    millis(wan.delay),
                    wan.loss_percent
                )?;
                match wan.rate {
                    Some(rate) => write!(f, ",rate={rate}bit"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl FromStr for PathSpec {
    type Err = PathSpecError;

    /// Reads a spec in the syntax of [`PathSpec`].
    fn from_str(s: &str) -> Result<PathSpec, PathSpecError> {
        let (kind, settings) = match s.split_once(':') {
            Some((kind, settings)) => (kind, Some(settings)),
            None => (s, None),
        };
        let mut spec = PathSpec::from(kind.parse::<PathKind>()?);
        for setting in settings.into_iter().flat_map(|s| s.split(',')) {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| PathSpecError(format!("{s:?}: {setting:?} is not key=value")))?;
            let kind = spec.kind();
            let bad = || {
                PathSpecError(format!(
                    "{s:?}: a {kind} path has no setting {key:?} (it has: {})",
                    match kind {
                        PathKind::Loopback => "none",
                        PathKind::Slow => "rate, queue",
                        PathKind::Wan => "delay, loss, rate",
                    }
                ))
            };
            match (&mut spec, key) {
                (PathSpec::Slow(slow), "rate") => slow.rate = parse_rate(value)?,
                (PathSpec::Slow(slow), "queue") => {
                    slow.queue = value.parse().map_err(|_| {
                        PathSpecError(format!("{value:?} is not a number of frames"))
                    })?;
                }
                (PathSpec::Wan(wan), "delay") => wan.delay = parse_duration(value)?,
                (PathSpec::Wan(wan), "loss") => wan.loss_percent = parse_percent(value)?,
                (PathSpec::Wan(wan), "rate") => wan.rate = Some(parse_rate(value)?),
                _ => return Err(bad()),
            }
        }
        spec.validate()
            .map_err(|e| PathSpecError(format!("{s:?}: {e}")))?;
        Ok(spec)
    }
}

/// A number followed by one of `units` (suffix, multiplier), tried in order.
fn with_unit(value: &str, units: &[(&str, f64)], what: &str) -> Result<f64, PathSpecError> {
    let lower = value.trim().to_ascii_lowercase();
    units
        .iter()
        .find_map(|(suffix, scale)| {
            let number = lower.strip_suffix(suffix)?.trim();
            let number: f64 = number.parse().ok()?;
            (number.is_finite() && number >= 0.0).then_some(number * scale)
        })
        .ok_or_else(|| PathSpecError(format!("{value:?} is not {what}")))
}

/// `500kbit`, `4mbit`, `1gbit`, `9600bit`: bits per second.
fn parse_rate(value: &str) -> Result<u64, PathSpecError> {
    const UNITS: [(&str, f64); 4] = [("kbit", 1e3), ("mbit", 1e6), ("gbit", 1e9), ("bit", 1.0)];
    with_unit(value, &UNITS, "a rate (e.g. 500kbit, 4mbit)").map(|bits| bits.round() as u64)
}

/// `250us`, `20ms`, `1.5s`.
fn parse_duration(value: &str) -> Result<Duration, PathSpecError> {
    const UNITS: [(&str, f64); 3] = [("us", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    let seconds = with_unit(value, &UNITS, "a delay (e.g. 20ms)")?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| PathSpecError(format!("{value:?} is not a delay (e.g. 20ms)")))
}

/// `1%`, `0.5`, `2.5%`.
fn parse_percent(value: &str) -> Result<f64, PathSpecError> {
    let number = value.trim().trim_end_matches('%');
    number
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite())
        .ok_or_else(|| PathSpecError(format!("{value:?} is not a percentage (e.g. 1%)")))
}

/// `rate` bit/s for people: "4 Mbit/s", "500 kbit/s", "1.5 Mbit/s".
fn rate_text(rate: u64) -> String {
    let (value, unit) = match rate {
        r if r >= 1_000_000_000 => (r as f64 / 1e9, "Gbit/s"),
        r if r >= 1_000_000 => (r as f64 / 1e6, "Mbit/s"),
        r if r >= 1_000 => (r as f64 / 1e3, "kbit/s"),
        r => (r as f64, "bit/s"),
    };
    let value = format!("{value:.3}");
    let value = value.trim_end_matches('0').trim_end_matches('.');
    format!("{value} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_names() {
        for kind in PathKind::ALL {
            assert_eq!(kind.name().parse::<PathKind>(), Ok(kind));
        }
        assert!("lan".parse::<PathKind>().is_err());
    }

    #[test]
    fn mechanism_says_what_makes_the_path() {
        assert_eq!(
            PathSpec::from(PathKind::Slow).mechanism(),
            "veth + htb 4 Mbit/s each way, 32-frame queue"
        );
        assert_eq!(
            PathSpec::from(PathKind::Wan).mechanism(),
            "veth + user-space forwarder 20 ms each way + nftables 1% random drop each way"
        );
        let wan = PathSpec::Wan(Wan {
            delay: Duration::from_micros(2500),
            loss_percent: 0.0,
            rate: Some(500_000),
        });
        assert_eq!(
            wan.mechanism(),
            "veth + user-space forwarder 2.5 ms each way + htb 500 kbit/s each way"
        );
    }

    #[test]
    fn impossible_settings_are_refused() {
        let slow = |rate, queue| PathSpec::Slow(Slow { rate, queue });
        assert!(slow(0, 10).validate().is_err());
        assert!(slow(1000, 0).validate().is_err());
        assert!(slow(1000, 10).validate().is_ok());
        let wan = |loss_percent| {
            PathSpec::Wan(Wan {
                loss_percent,
                ..Wan::default()
            })
        };
        assert!(wan(-1.0).validate().is_err());
        assert!(wan(100.5).validate().is_err());
        assert!(wan(f64::NAN).validate().is_err());
        assert!(wan(100.0).validate().is_ok());
    }

    #[test]
    fn rate_text_drops_needless_decimals() {
        assert_eq!(rate_text(4_000_000), "4 Mbit/s");
        assert_eq!(rate_text(500_000), "500 kbit/s");
        assert_eq!(rate_text(1_500_000), "1.5 Mbit/s");
        assert_eq!(rate_text(10_000_000_000), "10 Gbit/s");
        assert_eq!(rate_text(999), "999 bit/s");
    }

    #[test]
    fn a_bare_kind_parses_to_its_defaults() {
        for kind in PathKind::ALL {
            assert_eq!(kind.name().parse::<PathSpec>(), Ok(PathSpec::from(kind)));
        }
    }

    #[test]
    fn settings_parse_with_their_units() {
        assert_eq!(
            "slow:rate=500kbit,queue=16".parse::<PathSpec>(),
            Ok(PathSpec::Slow(Slow {
                rate: 500_000,
                queue: 16
            }))
        );
        assert_eq!(
            "wan:delay=50ms,loss=2%,rate=10Mbit".parse::<PathSpec>(),
            Ok(PathSpec::Wan(Wan {
                delay: Duration::from_millis(50),
                loss_percent: 2.0,
                rate: Some(10_000_000),
            }))
        );
        assert_eq!(
            "wan:delay=250us,loss=0.5".parse::<PathSpec>(),
            Ok(PathSpec::Wan(Wan {
                delay: Duration::from_micros(250),
                loss_percent: 0.5,
                rate: None,
            }))
        );
    }

    #[test]
    fn display_writes_what_parse_reads() {
        for text in [
            "loopback",
            "slow:rate=500kbit",
            "wan",
            "wan:delay=1.5ms,loss=0.25,rate=2mbit",
            "wan:delay=250us,loss=0.01",
        ] {
            let spec: PathSpec = text.parse().unwrap();
            assert_eq!(spec.to_string().parse::<PathSpec>(), Ok(spec), "{spec}");
        }
        assert_eq!(
            PathSpec::from(PathKind::Wan).to_string(),
            "wan:delay=20ms,loss=1%"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let error = |text: &str| text.parse::<PathSpec>().unwrap_err().to_string();
        assert!(error("lan").contains("unknown path \"lan\""));
        assert!(error("slow:delay=5ms").contains("has no setting \"delay\""));
        assert!(error("loopback:rate=1mbit").contains("has no setting"));
        assert!(error("wan:delay").contains("not key=value"));
        assert!(error("wan:delay=5").contains("not a delay"));
        assert!(error("slow:rate=fast").contains("not a rate"));
        assert!(error("slow:rate=-1mbit").contains("not a rate"));
        assert!(error("wan:loss=120%").contains("between 0 and 100"));
        assert!(error("slow:rate=0bit").contains("above 0"));
    }
}
