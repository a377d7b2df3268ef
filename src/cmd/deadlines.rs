//! The teardown's deadlines on the command line, shared by `serve` and
//! `serve-http`: `--grace`, `--stall-timeout`, `--delivery-timeout`, named
//! as the library names them (`farewell::policy`, "Deadlines").

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use farewell::Policy;

use crate::duration::parse_duration;

/// Where `--help` lists them.
const HEADING: &str = "Teardown deadlines";

/// The three deadlines of a teardown policy; each one left out keeps the
/// policy's default.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadlineArgs {
    /// Peer-first: how long the client has to close once everything we wrote was ACKed
    /// [default: 2s]
    ///
    /// Counted from the end of delivery, so a slow reader gets all of it after its last
    /// byte. A client that does not close by then is reset (no TIME-WAIT anywhere). The
    /// other policies have no grace: plain, lingering and fin-then-reset send their own FIN
    /// (see --stall-timeout and --delivery-timeout), abort and silent do not wait.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = HEADING)]
    pub grace: Option<Duration>,
    /// How long delivering what we wrote may go without progress before the teardown gives
    /// up [default: 15s; lingering 5s]
    ///
    /// Progress is a byte written or newly ACKed by the client's kernel, so a client that
    /// reads slowly but steadily is never cut by it; one that stopped reading or vanished
    /// is. What each policy then does: peer-first and fin-then-reset reset
    /// (reset-delivery-stalled); plain closes with the rest unwritten (plain-close);
    /// lingering, once its FIN is sent, also counts a byte read from the client as progress,
    /// and closes (lingering-timeout; lingering-reset resets: reset-after-linger). abort and
    /// silent never wait and refuse it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = HEADING)]
    pub stall_timeout: Option<Duration>,
    /// The total cap on delivering what we wrote, from the start of the teardown, even to
    /// a client still taking bytes [default: 60s; lingering 30s]
    ///
    /// It bounds a client that ACKs a byte now and then (a slow-read attack). What each
    /// policy then does: peer-first resets (reset-delivery-timeout); fin-then-reset resets
    /// with its FIN unACKed (reset-fin-unacked); plain closes with the rest unwritten
    /// (plain-close); for lingering it caps the whole close, reading for the client's FIN
    /// included, as nginx's lingering_time (lingering-timeout, or reset-after-linger).
    /// abort and silent never wait and refuse it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = HEADING)]
    pub delivery_timeout: Option<Duration>,
}

impl DeadlineArgs {
    /// `policy` with the deadlines given, or an error that says which flag the
    /// policy does not have and what it has instead.
    pub fn apply(&self, policy: Policy) -> anyhow::Result<Policy> {
        let name = policy.name();
        let mut policy = policy;
        if let Some(grace) = self.grace {
            if policy.grace().is_none() {
                bail!(
                    "--grace is peer-first's wait for the client's FIN after delivery; \
                     --policy {name} has no grace\nhint: {}",
                    Self::hint(policy)
                );
            }
            policy = policy.with_grace(grace);
        }
        for (flag, given, has) in [
            (
                "--stall-timeout",
                self.stall_timeout,
                policy.stall_timeout(),
            ),
            (
                "--delivery-timeout",
                self.delivery_timeout,
                policy.delivery_timeout(),
            ),
        ] {
            if given.is_some() && has.is_none() {
                bail!(
                    "{flag} bounds a teardown that waits; --policy {name} does not wait\n\
                     hint: {}",
                    Self::hint(policy)
                );
            }
        }
        if let Some(stall) = self.stall_timeout {
            policy = policy.with_stall_timeout(stall);
        }
        if let Some(cap) = self.delivery_timeout {
            policy = policy.with_delivery_timeout(cap);
        }
        Ok(policy)
    }

    /// What the user can set on `policy` instead.
    fn hint(policy: Policy) -> String {
        match (policy.stall_timeout(), policy.delivery_timeout()) {
            (Some(stall), Some(cap)) => format!(
                "its deadlines are --stall-timeout (default {stall:?}) and --delivery-timeout \
                 (default {cap:?})"
            ),
            _ => "drop the flag, or pick a policy that waits: peer-first, plain, lingering, \
                  fin-then-reset"
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str) -> Policy {
        name.parse().unwrap()
    }

    #[test]
    fn given_deadlines_reach_the_policy_and_the_rest_keep_their_defaults() {
        let args = DeadlineArgs {
            stall_timeout: Some(Duration::from_secs(3)),
            delivery_timeout: Some(Duration::from_secs(7)),
            ..DeadlineArgs::default()
        };
        for name in [
            "plain",
            "lingering",
            "lingering-reset",
            "fin-then-reset",
            "peer-first",
        ] {
            let got = args.apply(policy(name)).unwrap();
            assert_eq!(got.name(), name);
            assert_eq!(got.stall_timeout(), Some(Duration::from_secs(3)), "{name}");
            assert_eq!(
                got.delivery_timeout(),
                Some(Duration::from_secs(7)),
                "{name}"
            );
            assert_eq!(got.grace(), policy(name).grace(), "{name}");
        }
        let grace = DeadlineArgs {
            grace: Some(Duration::from_millis(300)),
            ..DeadlineArgs::default()
        };
        let got = grace.apply(Policy::default()).unwrap();
        assert_eq!(got.grace(), Some(Duration::from_millis(300)));
        assert_eq!(got.stall_timeout(), Policy::default().stall_timeout());
        assert_eq!(
            DeadlineArgs::default().apply(policy("plain")).unwrap(),
            policy("plain")
        );
    }

    #[test]
    fn a_deadline_the_policy_does_not_have_is_an_error_that_names_what_it_has() {
        let grace = DeadlineArgs {
            grace: Some(Duration::from_secs(1)),
            ..DeadlineArgs::default()
        };
        let err = format!("{:#}", grace.apply(policy("plain")).unwrap_err());
        assert!(err.contains("--policy plain has no grace"), "{err}");
        assert!(err.contains("--delivery-timeout (default 60s)"), "{err}");
        let stall = DeadlineArgs {
            stall_timeout: Some(Duration::from_secs(1)),
            ..DeadlineArgs::default()
        };
        let err = format!("{:#}", stall.apply(Policy::Abort).unwrap_err());
        assert!(err.contains("--stall-timeout"), "{err}");
        assert!(err.contains("--policy abort does not wait"), "{err}");
        let cap = DeadlineArgs {
            delivery_timeout: Some(Duration::from_secs(1)),
            ..DeadlineArgs::default()
        };
        let err = format!("{:#}", cap.apply(Policy::Silent).unwrap_err());
        assert!(err.contains("--delivery-timeout"), "{err}");
    }
}
