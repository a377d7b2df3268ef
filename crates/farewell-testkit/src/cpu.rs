//! CPU time of one runtime's threads, read from `/proc/self/task/<tid>/stat` (Linux).
//!
//! Each benchmarked server runs on its own tokio runtime; its threads record
//! their ids when they start, so the bench can charge a server exactly the CPU
//! its threads used, not the clients' (which run in the same process).

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The threads of one runtime, collected by [`ThreadCpu::register_current`].
#[derive(Clone, Default)]
pub struct ThreadCpu {
    stat_paths: Arc<Mutex<Vec<String>>>,
}

impl ThreadCpu {
    /// Call from `on_thread_start`: remembers the calling thread.
    pub fn register_current(&self) {
        // /proc/thread-self links to "<pid>/task/<tid>" for the calling thread.
        if let Ok(link) = std::fs::read_link("/proc/thread-self") {
            let path = format!("/proc/{}/stat", link.display());
            self.stat_paths.lock().expect("not poisoned").push(path);
        }
    }

    /// Waits (at most `bound`, polling) until `threads` threads have registered.
    ///
    /// A runtime's worker threads run `on_thread_start` on their own schedule,
    /// after `build()` returns; a reading taken before they all did would miss
    /// them (or find none at all). Call this once, right after building the
    /// runtime, from outside it.
    pub fn wait_for_threads(&self, threads: usize, bound: Duration) {
        let deadline = std::time::Instant::now() + bound;
        while self.stat_paths.lock().expect("not poisoned").len() < threads
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// User + system CPU time used so far by the registered threads that are
    /// still alive; `None` where `/proc` cannot say (not Linux).
    pub fn total(&self) -> Option<Duration> {
        let paths = self.stat_paths.lock().expect("not poisoned");
        if paths.is_empty() {
            return None;
        }
        let ticks: u64 = paths.iter().filter_map(|p| thread_ticks(p)).sum();
        Some(Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS_PER_SEC))
    }
}

/// CPU time (user + system) the calling thread used so far, to the
/// nanosecond (`CLOCK_THREAD_CPUTIME_ID`). Unlike a wall clock it does not
/// count the time the thread waited for a core, so it stays meaningful on a
/// loaded machine; the kernel's work done in the thread's own system calls
/// (on loopback, the peer's receive path too) is included. `None` where the
/// clock is missing.
pub fn thread_cpu_now() -> Option<Duration> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(Duration::from(now))
}

/// The whole machine's busy CPU time so far (every core, every process and
/// the kernel's interrupt work: user + nice + system + irq + softirq of
/// `/proc/stat`'s `cpu` line; idle, iowait and steal left out). The
/// difference over a run, divided by its responses, is what one response
/// cost everyone: server, clients and kernel, wherever loopback charged it.
/// `None` where `/proc/stat` cannot say.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| ticks.get(i).copied())
        .sum::<Option<u64>>()?;
    Some(Duration::from_secs_f64(busy as f64 / CLOCK_TICKS_PER_SEC))
}

/// The busy CPU time of the machine ([`machine_busy`]) while `run` runs.
pub async fn machine_busy_during<T>(
    run: impl std::future::Future<Output = T>,
) -> (T, Option<Duration>) {
    let before = machine_busy();
    let out = run.await;
    let used = machine_busy()
        .zip(before)
        .map(|(after, before)| after.saturating_sub(before));
    (out, used)
}

/// Process `pid`'s CPU time so far (user + system, every thread:
/// `/proc/PID/stat`), e.g. a server the bench runs as a child.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    thread_ticks(&format!("/proc/{pid}/stat"))
        .map(|ticks| Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS_PER_SEC))
}

/// `USER_HZ`: the unit of the times in `/proc/*/stat`; 100 on every Linux
/// architecture we know of (the kernel's ABI fixes it, whatever `HZ` is).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// utime + stime (fields 14 and 15 of `proc_pid_stat(5)`) of one thread.
fn thread_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is rest[0]; 14 is rest[11]
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows_cpu_time() {
        let cpu = ThreadCpu::default();
        let spin = cpu.clone();
        let (spun, wait_spun) = std::sync::mpsc::channel();
        let (done, wait_done) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            spin.register_current();
            let start = std::time::Instant::now();
            let mut x = 0u64;
            // 100 ms of its own CPU is 10 ticks, whatever else the machine does.
            while std::fs::read_to_string("/proc/thread-self/stat").is_ok()
                && start.elapsed() < Duration::from_secs(10)
                && thread_ticks("/proc/thread-self/stat").unwrap_or(u64::MAX) < 10
            {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            spun.send(()).unwrap();
            let _ = wait_done.recv(); // stay alive while the total is read
        });
        wait_spun.recv().unwrap();
        let used = cpu.total().expect("linux /proc");
        done.send(()).unwrap();
        thread.join().unwrap();
        assert!(
            used >= Duration::from_millis(100),
            "a thread that spun for 10 ticks of its own CPU shows {used:?}"
        );
    }
}
