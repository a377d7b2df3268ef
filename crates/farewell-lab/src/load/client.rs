//! One load client: connects, runs its behaviour's script, and says what it saw.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout_at;

use super::Behaviour;
use farewell::TcpState;

/// The knobs of one client; [`ClientConfig::default`] is what `farewell load` uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The server's line limit (FLP/1 `--max-line`, newline included): the
    /// `overlong` client sends one byte more, and a longer line from the
    /// server is a protocol error. Default 4096.
    pub max_line: usize,
    /// Echo lines a `cooperative` or `ignore` client sends and checks. Default 3.
    pub echo_lines: usize,
    /// The bound on one connection's whole life, connect included: when it
    /// runs out the client closes and reports `timeout`. Default 15 s (the
    /// FLP/1 handshake timeout is 5 s, so a `silent` client gets its goodbye).
    pub timeout: Duration,
    /// Bytes a `flood` or `never-read` client writes at most. Default 1 MiB.
    pub flood_bytes: usize,
    /// How long a `flood` client writes at most. Default 1 s.
    pub flood_time: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            max_line: 4096,
            echo_lines: 3,
            timeout: Duration::from_secs(15),
            flood_bytes: 1 << 20,
            flood_time: Duration::from_secs(1),
        }
    }
}

/// The receive buffer a `never-read` client asks for (the kernel doubles it
/// and applies its minimum), so its window closes after a few lines.
pub const NEVER_READ_RCVBUF: u32 = 1024;

/// A `never-read` client counts its writes as stalled when none makes
/// progress for this long.
pub const WRITE_STALL: Duration = Duration::from_millis(200);

/// How a client's connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    /// The client closed it normally, its script done (after `BYE` for the
    /// behaviours that wait for one).
    Closed,
    /// The client reset it on purpose (the `reset` behaviour).
    Aborted,
    /// The server closed it (EOF) before the client did.
    Eof,
    /// The server reset it (`ECONNRESET`, `EPIPE`), or it was found `CLOSED`.
    Reset,
    /// The connection's bound ([`ClientConfig::timeout`]) ran out.
    Timeout,
    /// The connection could not be made.
    ConnectError,
    /// Anything else: an I/O error, or a server that broke the protocol
    /// (a wrong `WELCOME`, an overlong line).
    Error,
}

impl End {
    /// Every end, in report order.
    pub const ALL: [End; 7] = [
        End::Closed,
        End::Aborted,
        End::Eof,
        End::Reset,
        End::Timeout,
        End::ConnectError,
        End::Error,
    ];

    /// The name used in reports (`closed`, `connect-error`, …).
    pub fn name(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Aborted => "aborted",
            End::Eof => "eof",
            End::Reset => "reset",
            End::Timeout => "timeout",
            End::ConnectError => "connect-error",
            End::Error => "error",
        }
    }
}

/// What one client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnResult {
    /// What the client did.
    pub behaviour: Behaviour,
    /// The reason of the first `BYE <reason>` it read (for `never-read`: found
    /// in its receive queue by peeking, without reading), or `None`.
    pub goodbye: Option<String>,
    /// How the connection ended.
    pub end: End,
    /// From starting the connect to being connected.
    pub connect: Option<Duration>,
    /// From sending `HELLO` to reading `WELCOME` (behaviours that say `HELLO` and read).
    pub handshake: Option<Duration>,
    /// From being connected to reading `BYE`.
    pub to_goodbye: Option<Duration>,
    /// Echo lines that came back different from what was sent.
    pub echo_mismatches: u64,
    /// What went wrong, for [`End::ConnectError`] and [`End::Error`].
    pub error: Option<String>,
}

/// Runs one client of `behaviour` against the first of `targets` that
/// accepts a connection (tried in order), from `source` when given and of the
/// same family (else the kernel picks), with the id `<behaviour>-<index>`
/// (its [`load_name`](Behaviour::load_name)). Never takes longer than
/// `config.timeout` (plus scheduling). A behaviour the load generator does
/// not play (one outside [`Behaviour::LOAD`]) ends as [`End::Error`] at once.
pub async fn run_client(
    targets: &[SocketAddr],
    source: Option<IpAddr>,
    behaviour: Behaviour,
    index: u64,
    config: &ClientConfig,
) -> ConnResult {
    let mut rec = ConnResult {
        behaviour,
        goodbye: None,
        end: End::Error,
        connect: None,
        handshake: None,
        to_goodbye: None,
        echo_mismatches: 0,
        error: None,
    };
    if !Behaviour::LOAD.contains(&behaviour) {
        rec.error = Some(format!(
            "farewell load does not play the {} peer (farewell lab does)",
            behaviour.name()
        ));
        return rec;
    }
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + config.timeout);
    let mut failure = String::from("no target address");
    let mut stream = None;
    for target in targets {
        let source = source.filter(|s| s.is_ipv4() == target.is_ipv4());
        let attempt = match socket_for(*target, source, behaviour) {
            Ok(socket) => timeout_at(deadline, socket.connect(*target)).await,
            Err(e) => Ok(Err(e)),
        };
        match attempt {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => failure = format!("connect to {target}: {e}"),
            Err(_) => {
                failure = format!("connect to {target}: no answer within {:?}", config.timeout);
                break;
            }
        }
    }
    let Some(stream) = stream else {
        rec.end = End::ConnectError;
        rec.error = Some(failure);
        return rec;
    };
    rec.connect = Some(start.elapsed());
    let id = format!("{}-{index}", behaviour.load_name());
    let played = timeout_at(deadline, play(&mut rec, stream, &id, config)).await;
    match played {
        Ok(Ok(end)) => rec.end = end,
        Ok(Err(stop)) => {
            let (end, error) = stop.classify();
            rec.end = end;
            rec.error = error;
        }
        Err(_) => rec.end = End::Timeout,
    }
    rec
}

fn socket_for(
    target: SocketAddr,
    source: Option<IpAddr>,
    behaviour: Behaviour,
) -> io::Result<TcpSocket> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    if behaviour == Behaviour::NeverReads {
        socket.set_recv_buffer_size(NEVER_READ_RCVBUF)?;
    }
    Ok(socket)
}

/// Why a script stopped early.
enum Stop {
    /// `BYE` arrived where the script expected another line.
    Goodbye,
    /// The server closed the connection.
    Eof,
    /// A socket error.
    Io(io::Error),
    /// The server broke the protocol.
    Protocol(String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Io(e)
    }
}

impl Stop {
    fn classify(self) -> (End, Option<String>) {
        match self {
            Stop::Goodbye => (End::Closed, None),
            Stop::Eof => (End::Eof, None),
            Stop::Io(e) if is_reset(&e) => (End::Reset, None),
            Stop::Io(e) => (End::Error, Some(e.to_string())),
            Stop::Protocol(why) => (End::Error, Some(why)),
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A line from the server.
enum Line {
    Bye,
    Data(Vec<u8>),
}

/// Reads `\n`-terminated lines of at most `max` bytes.
struct Lines {
    reader: BufReader<OwnedReadHalf>,
    max: usize,
}

impl Lines {
    /// The next line without its newline; `Stop::Eof` at end of stream.
    async fn next(&mut self) -> Result<Vec<u8>, Stop> {
        let mut line = Vec::new();
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Err(Stop::Eof);
            }
            let (take, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..take]);
            self.reader.consume(take);
            if line.len() > self.max {
                return Err(Stop::Protocol(format!(
                    "the server sent a line longer than {} bytes",
                    self.max
                )));
            }
            if done {
                line.pop();
                return Ok(line);
            }
        }
    }
}

/// The reason of a `BYE <reason>` line.
fn goodbye_reason(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"BYE")?;
    if !(rest.is_empty() || rest.starts_with(b" ")) {
        return None;
    }
    Some(String::from_utf8_lossy(rest).trim().to_owned())
}

/// One connected client's script state.
struct Session<'a> {
    lines: Lines,
    writer: OwnedWriteHalf,
    rec: &'a mut ConnResult,
    id: &'a str,
    connected: Instant,
    config: &'a ClientConfig,
}

/// Records a goodbye (the first one) and its time; true when `line` is one.
fn note_goodbye(rec: &mut ConnResult, connected: Instant, line: &[u8]) -> bool {
    let Some(reason) = goodbye_reason(line) else {
        return false;
    };
    if rec.goodbye.is_none() {
        rec.goodbye = Some(reason);
        rec.to_goodbye = Some(connected.elapsed());
    }
    true
}

impl Session<'_> {
    async fn send(&mut self, line: &[u8]) -> Result<(), Stop> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        self.writer.write_all(&bytes).await?;
        Ok(())
    }

    async fn read(&mut self) -> Result<Line, Stop> {
        let line = self.lines.next().await?;
        Ok(if note_goodbye(self.rec, self.connected, &line) {
            Line::Bye
        } else {
            Line::Data(line)
        })
    }

    /// A data line, or `Stop::Goodbye`.
    async fn data(&mut self) -> Result<Vec<u8>, Stop> {
        match self.read().await? {
            Line::Bye => Err(Stop::Goodbye),
            Line::Data(line) => Ok(line),
        }
    }

    /// `HELLO <id>`, then `WELCOME <id>`.
    async fn hello(&mut self) -> Result<(), Stop> {
        let sent = Instant::now();
        self.send(format!("HELLO {}", self.id).as_bytes()).await?;
        let answer = self.data().await?;
        if answer != format!("WELCOME {}", self.id).as_bytes() {
            return Err(Stop::Protocol(format!(
                "expected \"WELCOME {}\", got {:?}",
                self.id,
                String::from_utf8_lossy(&answer)
            )));
        }
        self.rec.handshake = Some(sent.elapsed());
        Ok(())
    }

    /// Sends echo line `n` and checks it comes back unchanged.
    async fn echo(&mut self, n: usize) -> Result<(), Stop> {
        let line = format!("echo {} {n}", self.id);
        self.send(line.as_bytes()).await?;
        if self.data().await? != line.as_bytes() {
            self.rec.echo_mismatches += 1;
        }
        Ok(())
    }

    /// Reads (and ignores data) until `BYE`.
    async fn until_goodbye(&mut self) -> Result<(), Stop> {
        while let Line::Data(_) = self.read().await? {}
        Ok(())
    }

    /// Reads (noting any goodbye) until the server closes or resets.
    async fn until_closed(&mut self) -> End {
        loop {
            match self.read().await {
                Ok(_) => {}
                Err(stop) => return stop.classify().0,
            }
        }
    }

    /// Floods echo lines (bounded) while reading and discarding the echoes,
    /// then `QUIT`; returns when `BYE` arrives.
    async fn flood(&mut self) -> Result<(), Stop> {
        let Session {
            lines,
            writer,
            rec,
            id,
            connected,
            config,
        } = self;
        let mut chunk = Vec::new();
        for n in 0..64 {
            chunk.extend_from_slice(format!("flood {id} {n:0>40}\n").as_bytes());
        }
        let until = Instant::now() + config.flood_time;
        let write = async {
            let mut sent = 0usize;
            while sent < config.flood_bytes && Instant::now() < until {
                writer.write_all(&chunk).await?;
                sent += chunk.len();
            }
            writer.write_all(b"QUIT\n").await?;
            std::future::pending::<io::Result<()>>().await
        };
        let read = async {
            loop {
                let line = lines.next().await?;
                if note_goodbye(rec, *connected, &line) {
                    return Ok::<(), Stop>(());
                }
            }
        };
        tokio::pin!(read);
        tokio::select! {
            r = &mut read => r,
            // The write failed: the reader sees why (a goodbye, EOF or reset).
            _ = write => read.await,
        }
    }
}

/// Runs `rec.behaviour`'s script on a connected stream.
async fn play(
    rec: &mut ConnResult,
    stream: TcpStream,
    id: &str,
    config: &ClientConfig,
) -> Result<End, Stop> {
    let connected = Instant::now();
    let behaviour = rec.behaviour;
    if behaviour == Behaviour::NeverReads {
        return never_read(rec, stream, id, config, connected).await;
    }
    let (reader, writer) = stream.into_split();
    let mut s = Session {
        lines: Lines {
            reader: BufReader::new(reader),
            max: config.max_line,
        },
        writer,
        rec,
        id,
        connected,
        config,
    };
    // A script's `Stop::Goodbye` (BYE came early) is a normal end: the client
    // reacts to the goodbye as its behaviour says.
    let scripted = match behaviour {
        Behaviour::Cooperative | Behaviour::Ignores => {
            async {
                s.hello().await?;
                for n in 0..s.config.echo_lines {
                    s.echo(n).await?;
                }
                s.send(b"QUIT").await?;
                s.until_goodbye().await
            }
            .await
        }
        Behaviour::NeverHandshakes => s.until_goodbye().await,
        Behaviour::Floods => {
            async {
                s.hello().await?;
                s.flood().await
            }
            .await
        }
        Behaviour::BadHandshake => {
            async {
                s.send(b"GET / HTTP/1.0").await?;
                s.until_goodbye().await
            }
            .await
        }
        Behaviour::Overlong => {
            async {
                s.hello().await?;
                let long = vec![b'x'; s.config.max_line];
                s.send(&long).await?;
                s.until_goodbye().await
            }
            .await
        }
        Behaviour::ResetsFirst => {
            async {
                s.hello().await?;
                s.echo(0).await
            }
            .await
        }
        Behaviour::HalfClosesFirst => {
            async {
                s.hello().await?;
                s.echo(0).await?;
                s.writer.shutdown().await?;
                Ok(())
            }
            .await
        }
        Behaviour::NeverReads => unreachable!("handled above"),
        Behaviour::Vanishes | Behaviour::SlowReader => unreachable!("refused by run_client"),
    };
    match scripted {
        Ok(()) | Err(Stop::Goodbye) => {}
        Err(stop) => return Err(stop),
    }
    Ok(match behaviour {
        Behaviour::Ignores | Behaviour::HalfClosesFirst => s.until_closed().await,
        Behaviour::ResetsFirst => {
            let stream = s
                .lines
                .reader
                .into_inner()
                .reunite(s.writer)
                .expect("halves of one stream");
            farewell::sys::abort(stream.into_std()?)?;
            End::Aborted
        }
        _ => End::Closed,
    })
}

/// `HELLO`, then writes without reading until the writes stall (or the byte
/// bound), then watches the socket's own TCP state until the server closes
/// (`CLOSE-WAIT`) or resets (`CLOSED`) it.
async fn never_read(
    rec: &mut ConnResult,
    mut stream: TcpStream,
    id: &str,
    config: &ClientConfig,
    connected: Instant,
) -> Result<End, Stop> {
    stream.write_all(format!("HELLO {id}\n").as_bytes()).await?;
    let line = format!("never-read {id} {:0>40}\n", 0);
    let mut sent = 0usize;
    while sent < config.flood_bytes {
        match tokio::time::timeout(WRITE_STALL, stream.write(line.as_bytes())).await {
            Ok(Ok(n)) => sent += n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => break, // stalled: the windows are shut
        }
    }
    let end = loop {
        match farewell::sys::tcp_state(&stream)? {
            TcpState::Closed => break End::Reset,
            TcpState::CloseWait => break End::Eof,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    // Look at what reached our kernel without reading it.
    let mut queued = vec![0u8; 64 * 1024];
    if let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(50), stream.peek(&mut queued)).await
    {
        if let Some(line) = queued[..n]
            .split(|b| *b == b'\n')
            .find(|l| goodbye_reason(l).is_some())
        {
            note_goodbye(rec, connected, line);
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goodbye_lines() {
        assert_eq!(goodbye_reason(b"BYE quit"), Some("quit".into()));
        assert_eq!(
            goodbye_reason(b"BYE line-too-long\r"),
            Some("line-too-long".into())
        );
        assert_eq!(goodbye_reason(b"BYE"), Some(String::new()));
        assert_eq!(goodbye_reason(b"BYEBYE"), None);
        assert_eq!(goodbye_reason(b"echo BYE quit"), None);
    }
}
