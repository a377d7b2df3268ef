//! The supervisor in-process, as the bench and other servers use it: a
//! protocol of our own through the `Protocol` trait, the maximum lifetime,
//! reset-at-once shedding, and the summary `serve` returns — each judged by
//! what the client received and by the kernel's socket table.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use farewell::census::{self, Filter};
use farewell::{Ending, TcpState};
use farewell_server::{BusyMode, Flow, Protocol, Reason, ServerConfig, Summary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(10);

/// A protocol that is not FLP/1: no handshake greeting, lines are counted,
/// `STOP` ends with a reason of its own.
struct Counter;

impl Protocol for Counter {
    type Session = u32;

    fn handshake(&self, line: &[u8], _reply: &mut Vec<u8>) -> Result<u32, Reason> {
        if line == b"START" {
            Ok(0)
        } else {
            Err(Reason::BadHandshake)
        }
    }

    fn handle(&self, n: &mut u32, line: &[u8], reply: &mut Vec<u8>) -> Flow {
        if line == b"STOP" {
            return Flow::Goodbye(Reason::Protocol("stopped"));
        }
        *n += 1;
        reply.extend_from_slice(format!("{n}\n").as_bytes());
        Flow::Continue
    }

    fn goodbye(&self, reason: Reason) -> Bytes {
        Bytes::from(format!("END {reason}\n"))
    }
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Summary>,
}

async fn start<P: Protocol>(protocol: P, config: ServerConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(farewell_server::serve(listener, protocol, config, async {
        stopped.await.ok();
    }));
    Running { addr, stop, task }
}

impl Running {
    async fn stop(self) -> Summary {
        self.stop.send(()).unwrap();
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("serve returns")
            .unwrap()
    }
}

fn fast() -> ServerConfig {
    ServerConfig {
        policy: farewell::Policy::default().with_grace(Duration::from_millis(300)),
        drain_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

/// Reads until EOF or reset (bounded); what the client application received.
async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(BOUND, stream.read_to_end(&mut got)).await;
    got
}

/// Waits (bounded) until the server's address has only its listener left and
/// says how many server TIME-WAIT entries there are.
async fn server_time_wait(addr: SocketAddr) -> usize {
    let deadline = Instant::now() + BOUND;
    loop {
        let entries: Vec<_> = census::dump(&Filter::local_port(addr.port()))
            .unwrap()
            .into_iter()
            .filter(|e| e.local.ip() == addr.ip())
            .collect();
        let tw = entries
            .iter()
            .filter(|e| e.state == TcpState::TimeWait)
            .count();
        let others = entries.len() - tw;
        if others <= 1 || Instant::now() > deadline {
            assert_eq!(others, 1, "sockets left: {entries:#?}");
            return tw;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_protocol_of_our_own_needs_only_the_trait() {
    let server = start(Counter, fast()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(b"START\na\nb\nSTOP\n").await.unwrap();
    // A cooperative client: reads until the goodbye, then closes.
    let mut got = Vec::new();
    while !got.ends_with(b"END stopped\n") {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(BOUND, client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "EOF before the goodbye: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"1\n2\nEND stopped\n");
    drop(client);
    assert_eq!(server_time_wait(server.addr).await, 0);
    let summary = server.stop().await;
    assert_eq!(summary.goodbyes(Reason::Protocol("stopped")), 1);
    assert_eq!(summary.teardowns.count(Ending::PeerClosed), 1);
}

#[tokio::test]
async fn max_lifetime_ends_a_busy_session_with_bye_shutdown() {
    let config = ServerConfig {
        max_lifetime: Some(Duration::from_millis(300)),
        ..fast()
    };
    let server = start(farewell_server::flp::Flp, config).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(b"HELLO old\n").await.unwrap();
    // Keep talking: activity does not extend the lifetime. The server's
    // goodbye and reset may make a later write fail; that is the point.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let _ = client.write_all(b"still here\n").await;
    }
    let got = read_all(&mut client).await;
    assert!(got.starts_with(b"WELCOME old\n"), "{got:?}");
    assert!(
        got.ends_with(b"BYE shutdown\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    drop(client);
    assert_eq!(server_time_wait(server.addr).await, 0);
    let summary = server.stop().await;
    assert_eq!(summary.goodbyes(Reason::MaxLifetime), 1, "{summary}");
}

#[tokio::test]
async fn busy_reset_sheds_at_once_and_keeps_serving_the_others() {
    let config = ServerConfig {
        max_connections: 1,
        busy: BusyMode::Reset,
        ..fast()
    };
    let server = start(farewell_server::flp::Flp, config).await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first.write_all(b"HELLO first\n").await.unwrap();
    let mut welcome = [0u8; 14];
    first.read_exact(&mut welcome).await.unwrap();
    assert_eq!(&welcome, b"WELCOME first\n");

    let mut shed = TcpStream::connect(server.addr).await.unwrap();
    let got = read_all(&mut shed).await;
    assert!(got.is_empty() || got == b"BYE busy\n", "{got:?}");

    first.write_all(b"QUIT\n").await.unwrap();
    let mut bye = [0u8; 9];
    first.read_exact(&mut bye).await.unwrap();
    assert_eq!(&bye, b"BYE quit\n");
    drop(first);
    assert_eq!(server_time_wait(server.addr).await, 0);
    let summary = server.stop().await;
    assert_eq!(summary.goodbyes(Reason::Busy), 1);
    assert_eq!(summary.teardowns.count(Ending::Aborted), 1, "{summary}");
    assert_eq!(summary.accepted, 2);
}

#[tokio::test]
async fn shutdown_says_goodbye_to_every_connection_and_returns_the_summary() {
    let server = start(farewell_server::flp::Flp, fast()).await;
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(format!("HELLO s{i}\n").as_bytes())
            .await
            .unwrap();
        let mut line = vec![0u8; format!("WELCOME s{i}\n").len()];
        c.read_exact(&mut line).await.unwrap();
        clients.push(c);
    }
    let addr = server.addr;
    let summary = server.stop().await;
    for mut c in clients {
        assert_eq!(read_all(&mut c).await, b"BYE shutdown\n");
    }
    assert_eq!(summary.goodbyes(Reason::Shutdown), 10, "{summary}");
    assert_eq!(summary.teardowns.finished(), 10, "{summary}");
    assert_eq!(summary.unfinished + summary.teardowns.in_flight, 0);
    // The listener is gone too, and the server kept no TIME-WAIT.
    let left: Vec<_> = census::dump(&Filter::local_port(addr.port()))
        .unwrap()
        .into_iter()
        .filter(|e| e.local.ip() == addr.ip())
        .collect();
    assert!(
        left.iter()
            .all(|e| e.state != TcpState::Listen && e.state != TcpState::TimeWait),
        "{left:#?}"
    );
}

/// A slowloris after the handshake: one byte every 100 ms keeps the idle
/// timer from ever firing, so only the line timeout can end it. Another
/// client is served meanwhile.
#[tokio::test]
async fn a_client_trickling_a_line_is_cut_by_the_line_timeout() {
    let config = ServerConfig {
        idle_timeout: Duration::from_secs(30),
        line_timeout: Duration::from_millis(500),
        ..fast()
    };
    let server = start(farewell_server::flp::Flp, config).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"HELLO slow\n").await.unwrap();
    let trickle = async {
        // At most 100 bytes (10 s): far past the 0.5 s line timeout.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(b"x").await.is_err() {
                break;
            }
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::ZERO, slow.peek(&mut buf)).await {
                Ok(Ok(n)) if buf[..n].ends_with(b"BYE idle\n") => break,
                _ => {}
            }
        }
    };
    // Meanwhile a well-behaved client gets its answers.
    let mut quick = TcpStream::connect(server.addr).await.unwrap();
    quick.write_all(b"HELLO quick\nping\nQUIT\n").await.unwrap();
    let got = read_all(&mut quick).await;
    assert_eq!(got, b"WELCOME quick\nping\nBYE quit\n");
    drop(quick);
    tokio::time::timeout(BOUND, trickle).await.expect("bounded");
    let got = read_all(&mut slow).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "WELCOME slow\nBYE idle\n",
        "the trickling client is told goodbye"
    );
    drop(slow);
    assert_eq!(server_time_wait(server.addr).await, 0);
    let summary = server.stop().await;
    assert_eq!(summary.goodbyes(Reason::LineTimeout), 1, "{summary}");
}
