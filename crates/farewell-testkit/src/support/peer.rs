//! The peer scripts: how a client behaves while the server says goodbye and
//! ends the connection. One enum for both tools that play them:
//!
//! * the lab ([`crate::lab`]) plays [`Behaviour::LAB`] on raw loopback
//!   connections against every teardown policy (its player is `lab/peer.rs`);
//! * the load generator (`farewell_lab::load`) plays [`Behaviour::LOAD`]
//!   against any FLP/1 server (its player is farewell-lab's
//!   `load/client.rs`, each script line by line in that module's docs).
//!
//! # Two spellings
//!
//! Each tool named its peers before they shared this enum, and both names are
//! now stable (JSON keys, `--mix`, client ids), so each behaviour has two:
//! [`name`](Behaviour::name) says what the peer does (`farewell lab`:
//! `never-reads`), [`load_name`](Behaviour::load_name) is the short word
//! `farewell load --mix` takes (`never-read`). There is no `Display`, so
//! every printout says which one it means.
//!
//! | behaviour | lab ([`name`](Behaviour::name)) | load ([`load_name`](Behaviour::load_name)) |
//! |---|---|---|
//! | [`Cooperative`](Behaviour::Cooperative) | `cooperative` | `cooperative` |
//! | [`SlowReader`](Behaviour::SlowReader) | `slow-reader` | (not played) |
//! | [`Ignores`](Behaviour::Ignores) | `ignores` | `ignore` |
//! | [`NeverHandshakes`](Behaviour::NeverHandshakes) | `never-handshakes` | `silent` |
//! | [`NeverReads`](Behaviour::NeverReads) | `never-reads` | `never-read` |
//! | [`Floods`](Behaviour::Floods) | `floods` | `flood` |
//! | [`ResetsFirst`](Behaviour::ResetsFirst) | `resets-first` | `reset` |
//! | [`HalfClosesFirst`](Behaviour::HalfClosesFirst) | `half-closes-first` | `half-close` |
//! | [`Vanishes`](Behaviour::Vanishes) | `vanishes` | (not played) |
//! | [`BadHandshake`](Behaviour::BadHandshake) | (not played) | `bad-handshake` |
//! | [`Overlong`](Behaviour::Overlong) | (not played) | `overlong` |

/// The goodbye the lab's server sends (FLP/1's `BYE quit`); see
/// [`Behaviour::goodbye`] for the one exception.
pub const GOODBYE: &[u8] = b"BYE quit\n";

/// The goodbye to a peer that never handshakes (FLP/1's `BYE handshake-timeout`).
pub const HANDSHAKE_TIMEOUT_GOODBYE: &[u8] = b"BYE handshake-timeout\n";

/// The receive buffer a [`Behaviour::SlowReader`] asks for before it
/// connects (`SO_RCVBUF`; Linux doubles it for its own overhead), so its
/// window is small from the handshake on.
pub const SLOW_READER_RCVBUF: u32 = 16 * 1024;

/// How much a [`Behaviour::SlowReader`] reads at most at a time...
pub const SLOW_READ_CHUNK: usize = 4 * 1024;

/// ...and how often: [`SLOW_READ_CHUNK`] per 20 ms is 200 KiB/s, whatever
/// the path could carry.
pub const SLOW_READ_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// How the peer (the client) behaves while the server ends the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    /// Reads until the goodbye, then closes. (Load: says `HELLO`, checks a
    /// few echoes and `QUIT`s first.)
    Cooperative,
    /// A cooperative peer on a slow link or a slow device: a small receive
    /// buffer ([`SLOW_READER_RCVBUF`], set before connecting) and reads at a
    /// fixed slow rate ([`SLOW_READ_CHUNK`] every [`SLOW_READ_EVERY`]) until
    /// it has the whole goodbye, then closes. It is still taking bytes long
    /// after the goodbye was written: no policy should cut it. Played only
    /// by the lab.
    SlowReader,
    /// Reads the goodbye but does not leave: it keeps the connection open
    /// until the run ends (lab) or the server closes or resets it (load).
    Ignores,
    /// Connects and never sends a byte (a scanner, a stuck or slow-loris
    /// client): the server's goodbye is `BYE handshake-timeout`. It *reads*,
    /// as a client of a server-speaks-first protocol waits for the server's
    /// first line. The lab's does not understand the goodbye and closes only
    /// on EOF (or when the run ends); the load generator's closes after it.
    NeverHandshakes,
    /// Never reads, with a tiny receive buffer that the server fills first:
    /// the goodbye cannot be delivered.
    NeverReads,
    /// Writes as fast as it can (bounded in bytes and time) while reading.
    Floods,
    /// Resets the connection (`SO_LINGER` 0, close) before the server's
    /// teardown starts.
    ResetsFirst,
    /// Half-closes (sends its FIN) before the teardown, then reads until the
    /// server closes or resets.
    HalfClosesFirst,
    /// Vanishes before the teardown: its host is gone, nothing it could send
    /// or answer arrives (not even a reset). Played only by the lab, in two
    /// network namespaces ([`lab::netns`](crate::lab::netns)); needs `CAP_NET_ADMIN`.
    Vanishes,
    /// Sends something that is not FLP/1's `HELLO` (`GET / HTTP/1.0`) and
    /// reads until the goodbye, `BYE bad-handshake`. Played only by the load
    /// generator.
    BadHandshake,
    /// Sends a line one byte longer than the server's limit and reads until
    /// the goodbye, `BYE line-too-long`. Played only by the load generator.
    Overlong,
}

impl Behaviour {
    /// Every behaviour: the lab's in its order, then the load generator's own.
    pub const ALL: [Behaviour; 11] = [
        Behaviour::Cooperative,
        Behaviour::SlowReader,
        Behaviour::Ignores,
        Behaviour::NeverHandshakes,
        Behaviour::NeverReads,
        Behaviour::Floods,
        Behaviour::ResetsFirst,
        Behaviour::HalfClosesFirst,
        Behaviour::Vanishes,
        Behaviour::BadHandshake,
        Behaviour::Overlong,
    ];

    /// The behaviours the lab plays, in the order it runs and prints them.
    pub const LAB: [Behaviour; 9] = [
        Behaviour::Cooperative,
        Behaviour::SlowReader,
        Behaviour::Ignores,
        Behaviour::NeverHandshakes,
        Behaviour::NeverReads,
        Behaviour::Floods,
        Behaviour::ResetsFirst,
        Behaviour::HalfClosesFirst,
        Behaviour::Vanishes,
    ];

    /// The behaviours the load generator plays, in the order its docs and
    /// `--mix` errors list them.
    pub const LOAD: [Behaviour; 9] = [
        Behaviour::Cooperative,
        Behaviour::Ignores,
        Behaviour::NeverHandshakes,
        Behaviour::Floods,
        Behaviour::NeverReads,
        Behaviour::BadHandshake,
        Behaviour::Overlong,
        Behaviour::ResetsFirst,
        Behaviour::HalfClosesFirst,
    ];

    /// What the peer does, in kebab case (`"never-reads"`): the lab's name
    /// in its tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Cooperative => "cooperative",
            Behaviour::SlowReader => "slow-reader",
            Behaviour::Ignores => "ignores",
            Behaviour::NeverHandshakes => "never-handshakes",
            Behaviour::NeverReads => "never-reads",
            Behaviour::Floods => "floods",
            Behaviour::ResetsFirst => "resets-first",
            Behaviour::HalfClosesFirst => "half-closes-first",
            Behaviour::Vanishes => "vanishes",
            Behaviour::BadHandshake => "bad-handshake",
            Behaviour::Overlong => "overlong",
        }
    }

    /// The load generator's name (`"never-read"`): what `--mix` takes, its
    /// reports' keys, and the `<name>` of each client's `HELLO <name>-<n>`.
    /// For [`SlowReader`](Behaviour::SlowReader) and
    /// [`Vanishes`](Behaviour::Vanishes), which it does not play, the lab's name.
    pub fn load_name(self) -> &'static str {
        match self {
            Behaviour::Ignores => "ignore",
            Behaviour::NeverHandshakes => "silent",
            Behaviour::NeverReads => "never-read",
            Behaviour::Floods => "flood",
            Behaviour::ResetsFirst => "reset",
            Behaviour::HalfClosesFirst => "half-close",
            other => other.name(),
        }
    }

    /// The lab behaviour named `name` (as [`name`](Behaviour::name) prints it).
    pub fn from_name(name: &str) -> Option<Behaviour> {
        Behaviour::LAB.into_iter().find(|b| b.name() == name)
    }

    /// The load behaviour named `name` (as [`load_name`](Behaviour::load_name) prints it).
    pub fn from_load_name(name: &str) -> Option<Behaviour> {
        Behaviour::LOAD.into_iter().find(|b| b.load_name() == name)
    }

    /// The goodbye the lab's server sends this peer:
    /// [`HANDSHAKE_TIMEOUT_GOODBYE`] to a peer that never handshakes,
    /// [`GOODBYE`] to every other.
    pub fn goodbye(self) -> &'static [u8] {
        match self {
            Behaviour::NeverHandshakes => HANDSHAKE_TIMEOUT_GOODBYE,
            _ => GOODBYE,
        }
    }

    /// The reason of the `BYE` an FLP/1 server is expected to give this peer
    /// when the protocol fixes one and the peer reads it (`None`: it depends
    /// on the server, or the peer never reads it).
    pub fn expected_goodbye(self) -> Option<&'static str> {
        match self {
            Behaviour::Cooperative
            | Behaviour::SlowReader
            | Behaviour::Ignores
            | Behaviour::Floods => Some("quit"),
            Behaviour::NeverHandshakes => Some("handshake-timeout"),
            Behaviour::BadHandshake => Some("bad-handshake"),
            Behaviour::Overlong => Some("line-too-long"),
            Behaviour::NeverReads
            | Behaviour::ResetsFirst
            | Behaviour::HalfClosesFirst
            | Behaviour::Vanishes => None,
        }
    }

    /// True for a peer that reads everything the server sends until the
    /// goodbye and then closes: the cells where a large last message
    /// (the lab's `--large-goodbye`) says whether a policy delivers it.
    pub fn takes_last_message(self) -> bool {
        matches!(self, Behaviour::Cooperative | Behaviour::SlowReader)
    }

    /// True when the lab can play this peer only in network namespaces.
    pub fn needs_netns(self) -> bool {
        self == Behaviour::Vanishes
    }

    /// True for a peer whose application reads while the server tears down,
    /// so it can receive the goodbye if the policy lets it through.
    pub fn reads(self) -> bool {
        !matches!(
            self,
            Behaviour::NeverReads | Behaviour::ResetsFirst | Behaviour::Vanishes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_are_the_ones_its_json_has_always_printed() {
        let names = Behaviour::LAB.map(Behaviour::name);
        assert_eq!(
            names,
            [
                "cooperative",
                "slow-reader",
                "ignores",
                "never-handshakes",
                "never-reads",
                "floods",
                "resets-first",
                "half-closes-first",
                "vanishes"
            ]
        );
    }

    #[test]
    fn load_names_are_the_ones_mix_has_always_taken() {
        let names = Behaviour::LOAD.map(Behaviour::load_name);
        assert_eq!(
            names,
            [
                "cooperative",
                "ignore",
                "silent",
                "flood",
                "never-read",
                "bad-handshake",
                "overlong",
                "reset",
                "half-close"
            ]
        );
    }

    #[test]
    fn each_name_finds_its_behaviour_in_its_own_tool_only() {
        for b in Behaviour::LAB {
            assert_eq!(Behaviour::from_name(b.name()), Some(b));
        }
        for b in Behaviour::LOAD {
            assert_eq!(Behaviour::from_load_name(b.load_name()), Some(b));
        }
        assert_eq!(Behaviour::from_load_name("vanishes"), None);
        assert_eq!(Behaviour::from_load_name("slow-reader"), None);
        assert_eq!(Behaviour::from_load_name("never-reads"), None);
        assert_eq!(Behaviour::from_name("silent"), None);
        assert_eq!(Behaviour::from_name("overlong"), None);
    }

    #[test]
    fn every_behaviour_is_played_by_one_tool_at_least() {
        for b in Behaviour::ALL {
            assert!(
                Behaviour::LAB.contains(&b) || Behaviour::LOAD.contains(&b),
                "{b:?}"
            );
        }
    }
}
