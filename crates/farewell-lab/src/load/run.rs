//! Scheduling the clients: how many, how fast, how many at once, for how long.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::support::addr;

use super::{
    is_loopback, run_client, ClientConfig, Collector, ConnResult, LoadError, LoadReport, Mix,
};

/// The most connections one run may start.
pub const MAX_CONNECTIONS: u64 = 1_000_000;
/// The highest `rate`, in connections per second.
pub const MAX_RATE: f64 = 20_000.0;
/// The most connections open at once.
pub const MAX_CONCURRENCY: usize = 10_000;
/// The longest `duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The longest per-connection bound ([`ClientConfig::timeout`]).
pub const MAX_CLIENT_TIMEOUT: Duration = Duration::from_secs(600);
/// The most source addresses (`127.1.x.y`, see [`addr`]).
pub const MAX_SOURCES: usize = addr::COUNT;
/// Connections planned per source address when sources are chosen automatically.
pub const CONNECTIONS_PER_SOURCE: u64 = 10_000;

/// Where the clients connect from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sources {
    /// One address (the kernel's choice) for up to [`CONNECTIONS_PER_SOURCE`]
    /// planned connections, more beyond (IPv4 targets only, at most 256).
    #[default]
    Auto,
    /// This many: 1 lets the kernel choose; more spreads the clients over
    /// `127.1.0.1`, `127.1.0.2`, … so client ports never run out (IPv4
    /// targets only: `::1` is the only IPv6 loopback address).
    Count(usize),
}

/// One load run: where, what mix, how many, how fast, how long.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    /// The target as the user wrote it (for the report).
    pub target: String,
    /// Addresses to connect to, tried in order; every one must be loopback.
    pub addresses: Vec<SocketAddr>,
    /// The behaviour mix.
    pub mix: Mix,
    /// Start this many connections (at most [`MAX_CONNECTIONS`]); `None`: as
    /// many as `rate` allows within `duration`.
    pub connections: Option<u64>,
    /// Start at most this many connections per second ([`MAX_RATE`]);
    /// `None`: as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// At most this many connections open at once ([`MAX_CONCURRENCY`]).
    pub concurrency: usize,
    /// No connection starts after this ([`MAX_DURATION`]); the run then waits
    /// for the open ones, each bounded by `client.timeout`.
    pub duration: Duration,
    /// Source addresses.
    pub sources: Sources,
    /// What each client does.
    pub client: ClientConfig,
}

impl LoadConfig {
    /// A run of `connections` clients of `mix` against `addresses`, with the
    /// defaults `farewell load` uses (concurrency 50, duration 30 s).
    pub fn new(addresses: Vec<SocketAddr>, mix: Mix, connections: u64) -> LoadConfig {
        LoadConfig {
            target: addresses.first().map(|a| a.to_string()).unwrap_or_default(),
            addresses,
            mix,
            connections: Some(connections),
            rate: None,
            concurrency: 50,
            duration: Duration::from_secs(30),
            sources: Sources::Auto,
            client: ClientConfig::default(),
        }
    }

    /// Checks every bound and that every address is loopback.
    ///
    /// # Errors
    ///
    /// [`LoadError::Target`] for an address outside loopback;
    /// [`LoadError::Config`] for a value out of range.
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.addresses.is_empty() {
            return Err(LoadError::Config("no target address".into()));
        }
        if let Some(a) = self.addresses.iter().find(|a| !is_loopback(a.ip())) {
            return Err(LoadError::Target {
                target: self.target.clone(),
                why: format!("{} is not a loopback address", a.ip()),
            });
        }
        let bad = |what: String| Err(LoadError::Config(what));
        match (self.connections, self.rate) {
            (None, None) => return bad("give a connection count or a rate".into()),
            (Some(n), _) if n == 0 || n > MAX_CONNECTIONS => {
                return bad(format!("connections must be 1 to {MAX_CONNECTIONS}"))
            }
            (_, Some(r)) if !(r > 0.0 && r <= MAX_RATE) => {
                return bad(format!(
                    "rate must be above 0 and at most {MAX_RATE} per second"
                ))
            }
            _ => {}
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!("concurrency must be 1 to {MAX_CONCURRENCY}"));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!(
                "duration must be above 0 and at most {MAX_DURATION:?}"
            ));
        }
        if self.client.timeout.is_zero() || self.client.timeout > MAX_CLIENT_TIMEOUT {
            return bad(format!(
                "the per-connection timeout must be above 0 and at most {MAX_CLIENT_TIMEOUT:?}"
            ));
        }
        if self.client.max_line < 8 || self.client.max_line > 1 << 24 {
            return bad("max-line must be 8 bytes to 16 MiB".into());
        }
        if let Sources::Count(n) = self.sources {
            if n == 0 || n > MAX_SOURCES {
                return bad(format!("sources must be 1 to {MAX_SOURCES}"));
            }
        }
        Ok(())
    }

    /// Connections the run plans to start at most.
    pub fn planned(&self) -> u64 {
        let by_rate = self
            .rate
            .map(|r| (r * self.duration.as_secs_f64()).ceil() as u64);
        match (self.connections, by_rate) {
            (Some(n), Some(r)) => n.min(r),
            (Some(n), None) => n,
            (None, Some(r)) => r,
            (None, None) => 0,
        }
    }

    /// The source addresses clients bind to, the first of [`addr::sources`]
    /// (empty: the kernel chooses).
    pub fn source_addresses(&self) -> Vec<IpAddr> {
        let n = match self.sources {
            Sources::Count(n) => n,
            Sources::Auto => self
                .planned()
                .div_ceil(CONNECTIONS_PER_SOURCE)
                .clamp(1, 256) as usize,
        };
        if n <= 1 || !self.addresses[0].is_ipv4() {
            return Vec::new();
        }
        addr::sources(n).map(IpAddr::V4).collect()
    }
}

/// Runs the load: starts clients per `config` until the count, the duration
/// or `stop` ends it, waits (bounded) for the open ones, and reports.
/// `on_conn` is called as each client finishes (for progress).
///
/// When `stop` completes, no more clients start and the open ones are
/// dropped (counted as `unfinished`); the report says `interrupted`.
///
/// # Errors
///
/// As [`LoadConfig::validate`]; nothing is sent when it fails.
pub async fn run(
    config: &LoadConfig,
    on_conn: Arc<dyn Fn(&ConnResult) + Send + Sync>,
    stop: impl Future<Output = ()>,
) -> Result<LoadReport, LoadError> {
    config.validate()?;
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + config.duration);
    let addresses: Arc<[SocketAddr]> = config.addresses.clone().into();
    let sources = config.source_addresses();
    let client = Arc::new(config.client.clone());
    let collector = Arc::new(Mutex::new(Collector::new(
        config.mix.weights().iter().map(|(b, _)| *b),
    )));
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut ticker = config.rate.map(|r| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
        t
    });
    let mut assign = config.mix.assign();
    let mut tasks = JoinSet::new();
    let mut started = 0u64;
    let mut interrupted = false;
    tokio::pin!(stop);

    let planned = config.planned();
    loop {
        if started >= planned {
            break;
        }
        while tasks.try_join_next().is_some() {}
        let ready = async {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed")
        };
        let permit = tokio::select! {
            biased;
            _ = &mut stop => {
                interrupted = true;
                break;
            }
            _ = tokio::time::sleep_until(deadline) => break,
            permit = ready => permit,
        };
        let behaviour = assign.next().expect("the assignment never ends");
        let index = started;
        let source = (!sources.is_empty()).then(|| sources[index as usize % sources.len()]);
        let (addresses, client, collector, on_conn) = (
            addresses.clone(),
            client.clone(),
            collector.clone(),
            on_conn.clone(),
        );
        tasks.spawn(async move {
            let result = run_client(&addresses, source, behaviour, index, &client).await;
            on_conn(&result);
            collector.lock().expect("collector lock").add(&result);
            drop(permit);
        });
        started += 1;
    }

    // Every client is bounded by its own timeout; this bound only guards
    // against a client task that does not honour it.
    let bound = config.client.timeout + Duration::from_secs(2);
    if !interrupted {
        let drain = async { while tasks.join_next().await.is_some() {} };
        tokio::select! {
            _ = tokio::time::timeout(bound, drain) => {}
            _ = &mut stop => interrupted = true,
        }
    }
    drop(tasks); // aborts whatever is left

    let collector = std::mem::take(&mut *collector.lock().expect("collector lock"));
    let finished = collector.finished();
    let (totals, behaviours, errors) = collector.finish();
    Ok(LoadReport {
        target: config.target.clone(),
        addresses: config.addresses.iter().map(|a| a.to_string()).collect(),
        mix: config.mix.to_string(),
        connections_planned: config.connections,
        rate: config.rate,
        duration_ms: config.duration.as_secs_f64() * 1000.0,
        elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
        sources: sources.len().max(1),
        interrupted,
        started,
        unfinished: started - finished,
        totals,
        behaviours,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LoadConfig {
        LoadConfig::new(vec!["127.0.0.1:7878".parse().unwrap()], Mix::default(), 100)
    }

    #[test]
    fn bounds_are_checked() {
        assert!(config().validate().is_ok());
        let mut c = config();
        c.addresses = vec!["192.0.2.1:7878".parse().unwrap()];
        assert!(matches!(c.validate(), Err(LoadError::Target { .. })));
        let mut c = config();
        c.connections = Some(MAX_CONNECTIONS + 1);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("connections"));
        let mut c = config();
        c.connections = None;
        assert!(c.validate().is_err());
        c.rate = Some(f64::NAN);
        assert!(c.validate().is_err());
        c.rate = Some(100.0);
        assert!(c.validate().is_ok());
        assert_eq!(c.planned(), 3000);
    }

    #[test]
    fn sources_spread_only_when_many_and_ipv4() {
        let mut c = config();
        assert!(c.source_addresses().is_empty());
        c.connections = Some(25_000);
        let s = c.source_addresses();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], "127.1.0.1".parse::<IpAddr>().unwrap());
        c.sources = Sources::Count(300);
        assert_eq!(
            c.source_addresses()[299],
            "127.1.1.46".parse::<IpAddr>().unwrap()
        );
        c.addresses = vec!["[::1]:7878".parse().unwrap()];
        assert!(c.source_addresses().is_empty());
    }
}
