//! Counting sockets by state.

use std::fmt;

use crate::TcpState;

/// How many sockets are in each [`TcpState`].
///
/// `Display` lists the states that have sockets, in kernel order, as
/// `ESTABLISHED 3, TIME-WAIT 12` (or `no sockets`).
///
/// # Examples
///
/// ```
/// use farewell::census::StateCounts;
/// use farewell::TcpState;
///
/// let counts: StateCounts = [TcpState::TimeWait, TcpState::Established, TcpState::TimeWait]
///     .into_iter()
///     .collect();
/// assert_eq!(counts.get(TcpState::TimeWait), 2);
/// assert_eq!(counts.total(), 3);
/// assert_eq!(counts.to_string(), "ESTABLISHED 1, TIME-WAIT 2");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    // Indexed by the kernel's state number; index 0 is unused.
    by_state: [usize; 13],
}

impl StateCounts {
    /// All counts zero.
    pub fn new() -> StateCounts {
        StateCounts::default()
    }

    /// Counts one more socket in `state`.
    pub fn record(&mut self, state: TcpState) {
        self.by_state[usize::from(state.to_kernel())] += 1;
    }

    /// How many sockets are in `state`.
    pub fn get(&self, state: TcpState) -> usize {
        self.by_state[usize::from(state.to_kernel())]
    }

    /// How many sockets in all.
    pub fn total(&self) -> usize {
        self.by_state.iter().sum()
    }

    /// The states that have at least one socket, with their counts, in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, usize)> + '_ {
        TcpState::ALL
            .into_iter()
            .map(|s| (s, self.get(s)))
            .filter(|(_, n)| *n > 0)
    }
}

impl FromIterator<TcpState> for StateCounts {
    fn from_iter<I: IntoIterator<Item = TcpState>>(iter: I) -> StateCounts {
        let mut counts = StateCounts::new();
        counts.extend(iter);
        counts
    }
}

impl Extend<TcpState> for StateCounts {
    fn extend<I: IntoIterator<Item = TcpState>>(&mut self, iter: I) {
        for state in iter {
            self.record(state);
        }
    }
}

impl fmt::Display for StateCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total() == 0 {
            return f.write_str("no sockets");
        }
        for (i, (state, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{state} {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_counts() {
        let c = StateCounts::new();
        assert_eq!(c.total(), 0);
        assert_eq!(c.iter().count(), 0);
        assert_eq!(c.to_string(), "no sockets");
    }

    #[test]
    fn record_get_total_iter() {
        let mut c = StateCounts::new();
        for _ in 0..12 {
            c.record(TcpState::TimeWait);
        }
        c.extend([TcpState::Established; 3]);
        c.record(TcpState::NewSynReceived);
        assert_eq!(c.get(TcpState::TimeWait), 12);
        assert_eq!(c.get(TcpState::Established), 3);
        assert_eq!(c.get(TcpState::Listen), 0);
        assert_eq!(c.total(), 16);
        let v: Vec<_> = c.iter().collect();
        assert_eq!(
            v,
            [
                (TcpState::Established, 3),
                (TcpState::TimeWait, 12),
                (TcpState::NewSynReceived, 1)
            ]
        );
    }

    #[test]
    fn display_lists_nonzero_states_in_kernel_order() {
        let c: StateCounts = std::iter::repeat(TcpState::TimeWait)
            .take(12)
            .chain([TcpState::Established; 3])
            .collect();
        assert_eq!(c.to_string(), "ESTABLISHED 3, TIME-WAIT 12");
    }
}
