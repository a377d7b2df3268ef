//! The client behaviours and the mix that says how often each runs.

use std::fmt;
use std::str::FromStr;

/// What one load client does on its connection: the peer scripts the lab
/// plays too, spelled as `--mix` takes them ([`Behaviour::load_name`]).
/// [`Behaviour::LOAD`] lists the ones the load generator plays; the
/// [module docs](super) give each script line by line.
pub use crate::support::peer::Behaviour;

/// Why a `--mix` string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// Nothing but separators.
    #[error("the mix is empty; write NAME=WEIGHT pairs, e.g. cooperative=70,silent=30")]
    Empty,
    /// A name that is not one of [`Behaviour::LOAD`] (as [`Behaviour::load_name`] spells it).
    #[error("unknown behaviour {0:?}; known: {known}", known = known())]
    UnknownBehaviour(String),
    /// A weight that is not a whole number in range.
    #[error("the weight of {name} is {weight:?}; write a whole number from 0 to {MAX_WEIGHT}, e.g. {name}=10")]
    BadWeight {
        /// The behaviour.
        name: String,
        /// The text given as its weight.
        weight: String,
    },
    /// The same behaviour twice.
    #[error("{0} appears twice in the mix; give each behaviour once")]
    Duplicate(String),
    /// Every weight is 0.
    #[error("every weight in the mix is 0; give at least one behaviour a positive weight")]
    AllZero,
}

fn known() -> String {
    Behaviour::LOAD.map(Behaviour::load_name).join(", ")
}

/// The largest weight one behaviour may have in a [`Mix`].
pub const MAX_WEIGHT: u32 = 1_000_000;

/// How often each [`Behaviour`] runs: relative weights, as in
/// `cooperative=70,ignore=10,silent=10,flood=5,never-read=5`.
///
/// A bare name counts as weight 1 (`--mix silent` runs only silent clients).
/// Connections are assigned deterministically and interleaved (smooth
/// weighted round-robin, as nginx balances upstreams), so every window of
/// `total_weight()` consecutive connections has exactly each behaviour's
/// weight in it.
///
/// # Examples
///
/// ```
/// use farewell_lab::load::{Behaviour, Mix};
///
/// let mix: Mix = "cooperative=2,silent=1".parse()?;
/// let first: Vec<Behaviour> = mix.assign().take(6).collect();
/// assert_eq!(first.iter().filter(|b| **b == Behaviour::NeverHandshakes).count(), 2);
/// assert!("coop=1".parse::<Mix>().unwrap_err().to_string().contains("unknown behaviour"));
/// # Ok::<(), farewell_lab::load::MixError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Behaviour, u32)>,
}

impl Mix {
    /// The behaviours with a positive weight, in the order given.
    pub fn weights(&self) -> &[(Behaviour, u32)] {
        &self.weights
    }

    /// The sum of the weights.
    pub fn total_weight(&self) -> u64 {
        self.weights.iter().map(|(_, w)| u64::from(*w)).sum()
    }

    /// The behaviour of each connection, in order, without end.
    pub fn assign(&self) -> impl Iterator<Item = Behaviour> + '_ {
        let total = self.total_weight() as i64;
        let mut current = vec![0i64; self.weights.len()];
        std::iter::from_fn(move || {
            let mut best = 0;
            for (i, (_, w)) in self.weights.iter().enumerate() {
                current[i] += i64::from(*w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            Some(self.weights[best].0)
        })
    }
}

impl Default for Mix {
    /// `cooperative=70,ignore=10,silent=10,flood=5,never-read=5`.
    fn default() -> Mix {
        DEFAULT_MIX.parse().expect("the default mix parses")
    }
}

/// The mix `farewell load` runs when none is given.
pub const DEFAULT_MIX: &str = "cooperative=70,ignore=10,silent=10,flood=5,never-read=5";

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Mix, MixError> {
        let mut weights: Vec<(Behaviour, u32)> = Vec::new();
        let mut seen = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, weight) = match item.split_once('=') {
                Some((n, w)) => (n.trim(), Some(w.trim())),
                None => (item, None),
            };
            let behaviour = Behaviour::from_load_name(name)
                .ok_or_else(|| MixError::UnknownBehaviour(name.to_owned()))?;
            if seen.contains(&behaviour) {
                return Err(MixError::Duplicate(name.to_owned()));
            }
            seen.push(behaviour);
            let weight = match weight {
                None => 1,
                Some(w) => w
                    .parse::<u32>()
                    .ok()
                    .filter(|w| *w <= MAX_WEIGHT)
                    .ok_or_else(|| MixError::BadWeight {
                        name: name.to_owned(),
                        weight: w.to_owned(),
                    })?,
            };
            if weight > 0 {
                weights.push((behaviour, weight));
            }
        }
        if seen.is_empty() {
            return Err(MixError::Empty);
        }
        if weights.is_empty() {
            return Err(MixError::AllZero);
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (b, w)) in self.weights.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={w}", b.load_name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mix_round_trips() {
        assert_eq!(Mix::default().to_string(), DEFAULT_MIX);
        assert_eq!(Mix::default().total_weight(), 100);
    }

    #[test]
    fn assignment_is_exact_per_window_and_interleaved() {
        let mix: Mix = DEFAULT_MIX.parse().unwrap();
        let first: Vec<Behaviour> = mix.assign().take(200).collect();
        for window in first.chunks(100) {
            for (b, w) in mix.weights() {
                assert_eq!(
                    window.iter().filter(|x| *x == b).count(),
                    *w as usize,
                    "{}",
                    b.load_name()
                );
            }
        }
        // Interleaved: the silent clients are not all bunched at one end.
        let silent: Vec<usize> = (0..100)
            .filter(|i| first[*i] == Behaviour::NeverHandshakes)
            .collect();
        assert!(silent[0] < 20 && silent[9] > 80, "{silent:?}");
    }

    #[test]
    fn bare_names_weigh_one_and_zero_weights_drop_out() {
        let mix: Mix = "silent, flood=0, reset".parse().unwrap();
        assert_eq!(
            mix.weights(),
            [(Behaviour::NeverHandshakes, 1), (Behaviour::ResetsFirst, 1)]
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Mix>().unwrap_err();
        assert_eq!(err(""), MixError::Empty);
        assert_eq!(err(" , "), MixError::Empty);
        assert!(matches!(err("coop=1"), MixError::UnknownBehaviour(n) if n == "coop"));
        assert!(err("coop=1")
            .to_string()
            .contains("known: cooperative, ignore"));
        assert!(matches!(err("silent=-1"), MixError::BadWeight { .. }));
        assert!(matches!(err("silent=1.5"), MixError::BadWeight { .. }));
        assert!(matches!(err("silent=99999999"), MixError::BadWeight { .. }));
        assert_eq!(
            err("silent=1,silent=2"),
            MixError::Duplicate("silent".into())
        );
        assert_eq!(err("silent=0"), MixError::AllZero);
    }
}
