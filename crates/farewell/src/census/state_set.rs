//! A set of TCP states, as the kernel's `idiag_states` bitmask.

use std::fmt;

use crate::TcpState;

/// A set of [`TcpState`]s, stored as the kernel's `idiag_states` bitmask
/// (bit `n` is the state the kernel numbers `n`).
///
/// # Examples
///
/// ```
/// use farewell::census::StateSet;
/// use farewell::TcpState;
///
/// let closing = StateSet::only(&[TcpState::FinWait1, TcpState::FinWait2]).with(TcpState::TimeWait);
/// assert!(closing.contains(TcpState::TimeWait));
/// assert!(!closing.contains(TcpState::Established));
/// assert_eq!(closing.to_string(), "FIN-WAIT-1|FIN-WAIT-2|TIME-WAIT");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateSet(u32);

impl StateSet {
    /// Every state.
    pub fn all() -> StateSet {
        TcpState::ALL.iter().copied().collect()
    }

    /// No state at all (a filter with it matches nothing).
    pub fn empty() -> StateSet {
        StateSet(0)
    }

    /// Exactly the states given.
    pub fn only(states: &[TcpState]) -> StateSet {
        states.iter().copied().collect()
    }

    /// Exactly one state.
    pub fn single(state: TcpState) -> StateSet {
        StateSet(bit(state))
    }

    /// True when `state` is in the set.
    pub fn contains(self, state: TcpState) -> bool {
        self.0 & bit(state) != 0
    }

    /// This set plus `state`.
    #[must_use]
    pub fn with(self, state: TcpState) -> StateSet {
        StateSet(self.0 | bit(state))
    }

    /// This set minus `state`.
    #[must_use]
    pub fn without(self, state: TcpState) -> StateSet {
        StateSet(self.0 & !bit(state))
    }

    /// True when the set holds no state.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The states in the set, in kernel order.
    pub fn iter(self) -> impl Iterator<Item = TcpState> {
        TcpState::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The kernel's bitmask (`1 << TCP_*` for each state in the set).
    pub fn bits(self) -> u32 {
        self.0
    }
}

fn bit(state: TcpState) -> u32 {
    1 << state.to_kernel()
}

impl FromIterator<TcpState> for StateSet {
    fn from_iter<I: IntoIterator<Item = TcpState>>(iter: I) -> StateSet {
        StateSet(iter.into_iter().fold(0, |acc, s| acc | bit(s)))
    }
}

impl From<TcpState> for StateSet {
    fn from(state: TcpState) -> StateSet {
        StateSet::single(state)
    }
}

impl fmt::Display for StateSet {
    /// The RFC names joined by `|`, or `(none)` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(none)");
        }
        for (i, state) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(state.rfc_name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for StateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_contains_every_state_and_matches_the_kernel_mask() {
        let all = StateSet::all();
        for s in TcpState::ALL {
            assert!(all.contains(s));
        }
        // Bits 1..=12, as `ss` sends for "all".
        assert_eq!(all.bits(), 0x1ffe);
    }

    #[test]
    fn single_only_with_without() {
        let tw = StateSet::single(TcpState::TimeWait);
        assert_eq!(tw.bits(), 1 << 6);
        assert!(tw.contains(TcpState::TimeWait));
        assert!(!tw.contains(TcpState::Established));

        let set = StateSet::only(&[TcpState::Listen, TcpState::Established]);
        assert_eq!(
            set,
            StateSet::empty()
                .with(TcpState::Established)
                .with(TcpState::Listen)
        );
        assert_eq!(
            set.without(TcpState::Listen),
            StateSet::single(TcpState::Established)
        );
        assert!(StateSet::empty().is_empty());
        assert!(StateSet::only(&[]).is_empty());
    }

    #[test]
    fn iter_is_in_kernel_order() {
        let set = StateSet::only(&[TcpState::Listen, TcpState::Established, TcpState::TimeWait]);
        let v: Vec<_> = set.iter().collect();
        assert_eq!(
            v,
            [TcpState::Established, TcpState::TimeWait, TcpState::Listen]
        );
    }

    #[test]
    fn display() {
        assert_eq!(StateSet::empty().to_string(), "(none)");
        assert_eq!(
            StateSet::only(&[TcpState::CloseWait, TcpState::Established]).to_string(),
            "ESTABLISHED|CLOSE-WAIT"
        );
    }
}
