//! `echo-std check`: a conformance and load test of any TCP echo server, or of an echo client,
//! for the owner of a board (or of any other echo program) to run against it.
//!
//! [`check_server`] connects to a server and runs the checks below one after another;
//! [`check_client`] waits for a client on a listener, checks its greeting, then drives the
//! fidelity checks through its echo. Each check ends as PASS, FAIL or SKIP with a message and
//! its [`Figure`]s; the [`Report`] holds them all, as text ([`Report::table`]) or as JSON
//! ([`Report::to_json`]). An [`Observer`] sees each check start, progress and end.
//!
//! # What each check judges
//!
//! Every payload is pseudo-random, so a lost, repeated or reordered byte shows at its offset.
//! Only the checks about bytes (`random-binary`, `split-utf8`, `invalid-utf8`) send anything
//! but printable ASCII lines: a server that mishandles UTF-8 fails those three and nothing
//! else.
//!
//! | check | sends | PASS when |
//! |---|---|---|
//! | `short-line` | `hello, echo\n` | it comes back as sent. If not, the server is unusable and every later check is SKIPped |
//! | `random-binary` | `--bytes` (1 MiB) of random bytes, written while the echo is read (full duplex) | all of it comes back byte-exact |
//! | `split-utf8` | `你😀é` one byte per write, each time waiting up to 100 ms for its echo | the 9 bytes come back as sent: a server that decodes each `recv` fails |
//! | `invalid-utf8` | invalid UTF-8 sequences and every control byte (NUL, CR, LF, ESC, DEL, 0xff...) in one write | they come back verbatim |
//! | `large-message` | 64 KiB in one write: 64 times the tutorial's `recv(1024)` | it comes back whole |
//! | `partial-send` | `--bytes` while this client reads nothing for a second, through a small receive window and 1460-byte segments (as over WiFi, even on loopback) | nothing is lost: the server's sends fill up and become partial, and it must keep what they did not take. A probe only when `--bytes` is well above what the server's socket buffers (a board's: a few KiB; a PC's on loopback with these segments: about 100 KiB) |
//! | `clients` | a line on each of `--clients` (3) connections, all open at once | every one is echoed within `--timeout` while all stay open. A server that serves fewer at a time FAILs (the tutorial's serves one); the message says how many were served at once, how many waited for others to close, and how many never were |
//! | `silent-client` | a line, while another client is connected and silent | the line comes back: one silent client does not stop another |
//! | `half-close` | `--bytes`/4, then FIN (`shutdown(SHUT_WR)`) | everything comes back, then the server closes within `--timeout` |
//! | `reset` | 64 KiB, then a reset (RST) with echo still unread; then a line on a new connection | the new client is served: the server survived |
//! | `churn` | 100 cycles of connect, one line, close | every cycle's line comes back |
//! | `throughput` | `--bytes` full duplex | reported (MiB/s), not judged; SKIP when the echo was not complete |
//! | `latency` | 64-byte messages, one at a time, up to 200 or 3 s | reported (p50, p99), not judged; SKIP when an echo went wrong |
//!
//! [`check_client`] checks `greeting` (the client's first bytes are exactly the expected
//! greeting, and nothing follows them unasked), then `short-line`, `random-binary`,
//! `split-utf8`, `invalid-utf8` and `large-message` as above, all on the client's one
//! connection; once that connection has ended, the later checks are SKIPped.
//!
//! # Bounds
//!
//! Each wait for the peer (a connection, the next bytes of an echo, a close) lasts at most
//! `timeout` (`--timeout`, 10 s); a check as a whole lasts at most [`CHECK_LIMIT_FACTOR`] times
//! that. Either way the check FAILs with a message that starts `timed out after`. The big
//! transfers scale with `bytes` (`--bytes`): on a slow link, give less of one or more of the
//! other.
//!
//! # JSON
//!
//! [`Report::to_json`] (`echo-std check --json`) gives one object; fields are only ever added:
//!
//! ```json
//! {
//!   "version": 1,
//!   "mode": "server",
//!   "peer": "127.0.0.1:5001",
//!   "settings": { "bytes": 1048576, "timeout_s": 10.0, "clients": 3 },
//!   "checks": [
//!     { "name": "short-line", "status": "PASS",
//!       "message": "\"hello, echo\\n\" came back as sent",
//!       "seconds": 0.001, "figures": { "round_trip_ms": 0.21 } }
//!   ],
//!   "summary": { "passed": 13, "failed": 0, "skipped": 0 }
//! }
//! ```
//!
//! `mode` is `server` (a server was checked) or `client`; `peer` is the address checked (for
//! a client: where it connected from, `null` if none did); `settings` in client mode are
//! `bytes`, `timeout_s`, `greeting` and `wait_s`. `status` is `PASS`, `FAIL` or `SKIP`;
//! `seconds` is how long the check took. `figures` maps names to numbers; a name ends in its
//! unit (`bytes`, `_s`, `_ms`, `_us`, `mib_per_s`, `_per_s`) unless it is a count:
//!
//! | check | figures |
//! |---|---|
//! | `greeting` | `bytes`, `greeting_ms` (from the connection to the whole greeting) |
//! | `short-line` | `round_trip_ms` |
//! | `random-binary` | `bytes`, `time_s`, `mib_per_s` |
//! | `split-utf8`, `invalid-utf8` | `bytes` |
//! | `large-message`, `partial-send` | `bytes`, `time_s` |
//! | `clients` | `clients`, `served_at_once`, `waited`, `never_served` (also when it FAILs) |
//! | `silent-client` | `echo_ms` |
//! | `half-close` | `bytes`, `close_ms` (from the last byte of echo to the server's FIN) |
//! | `reset` | `new_client_ms` |
//! | `churn` | `cycles`, `cycles_per_s`, `slowest_ms` |
//! | `throughput` | `mib_per_s`, `bytes`, `time_s` |
//! | `latency` | `round_trips`, `p50_us`, `p99_us` |
//!
//! A check that did not pass has no figures, except `clients`.

#[cfg(feature = "cli")]
mod cli;
mod client;
mod report;
mod server;
mod wire;

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::{Duration, Instant};

#[cfg(feature = "cli")]
pub use cli::{run, CheckArgs};
pub use client::CLIENT_CHECKS;
pub use server::SERVER_CHECKS;

use wire::Limits;

/// A check as a whole may last this many times the timeout.
pub const CHECK_LIMIT_FACTOR: u32 = 6;

/// Bytes in the big transfers by default: 1 MiB.
pub const DEFAULT_BYTES: usize = 1 << 20;

/// How long a check waits for the peer's next move by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Clients the `clients` check connects at once by default: echo's default slot count.
pub const DEFAULT_CLIENTS: usize = echo::DEFAULT_MAX_CLIENTS;

/// How long [`check_client`] waits for the client to connect by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// How big and how patient the checks are.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Bytes in the big transfers (`random-binary`, `partial-send`, `throughput`;
    /// `half-close` sends a quarter).
    pub bytes: usize,
    /// The longest wait for the peer's next move.
    pub timeout: Duration,
    /// Connections the `clients` check opens at once (server checks).
    pub clients: usize,
    /// What the client must send first (client checks).
    pub greeting: Vec<u8>,
    /// How long to wait for the client to connect (client checks).
    pub wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bytes: DEFAULT_BYTES,
            timeout: DEFAULT_TIMEOUT,
            clients: DEFAULT_CLIENTS,
            greeting: echo::DEFAULT_GREETING.as_bytes().to_vec(),
            wait: DEFAULT_WAIT,
        }
    }
}

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The peer did what the check asks.
    Pass,
    /// It did not; the message says what went wrong.
    Fail,
    /// The check could not run or measure; the message says why.
    Skip,
}

impl Status {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a figure counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A number of things.
    Count,
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Mebibytes per second.
    MibPerSecond,
    /// Things per second.
    PerSecond,
}

/// A number a check measured, e.g. `mib_per_s` = 210.5.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Its name in the JSON report, ending in its unit (`round_trip_ms`).
    pub key: &'static str,
    /// Its name in the text report (`round trip`).
    pub label: &'static str,
    /// The number.
    pub value: f64,
    /// What it counts.
    pub unit: Unit,
}

impl Figure {
    fn new(key: &'static str, label: &'static str, value: f64, unit: Unit) -> Self {
        Self {
            key,
            label,
            value,
            unit,
        }
    }

    fn count(key: &'static str, label: &'static str, count: usize) -> Self {
        Self::new(key, label, count as f64, Unit::Count)
    }

    fn bytes(key: &'static str, label: &'static str, bytes: usize) -> Self {
        Self::new(key, label, bytes as f64, Unit::Bytes)
    }

    fn seconds(key: &'static str, label: &'static str, time: Duration) -> Self {
        Self::new(key, label, time.as_secs_f64(), Unit::Seconds)
    }

    fn millis(key: &'static str, label: &'static str, time: Duration) -> Self {
        Self::new(key, label, time.as_secs_f64() * 1e3, Unit::Millis)
    }

    fn micros(key: &'static str, label: &'static str, time: Duration) -> Self {
        Self::new(key, label, time.as_secs_f64() * 1e6, Unit::Micros)
    }

    fn rate(bytes: usize, time: Duration) -> Self {
        let mib = bytes as f64 / f64::from(1 << 20);
        let value = mib / time.as_secs_f64().max(1e-9);
        Self::new("mib_per_s", "throughput", value, Unit::MibPerSecond)
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The check's name (`short-line`).
    pub name: &'static str,
    /// How it ended.
    pub status: Status,
    /// What happened, in words: for a FAIL, what went wrong.
    pub message: String,
    /// What it measured.
    pub figures: Vec<Figure>,
    /// How long it took.
    pub took: Duration,
}

/// Whether the server or a client was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// [`check_server`].
    Server,
    /// [`check_client`].
    Client,
}

/// Every check's outcome, in the order they ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// What was checked.
    pub mode: Mode,
    /// The address checked: the server's, or the one the client connected from.
    pub peer: Option<SocketAddr>,
    /// How big and patient the checks were.
    pub settings: Settings,
    /// The outcomes.
    pub checks: Vec<Outcome>,
}

impl Report {
    /// Checks that ended as `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        self.count(Status::Fail) == 0
    }
}

/// Sees the checks as they run, e.g. to print them and show progress.
pub trait Observer {
    /// The check `name` starts.
    fn started(&mut self, name: &'static str) {
        let _ = name;
    }

    /// The running check has done `done` of `total` (bytes, cycles or round trips).
    fn progress(&mut self, done: u64, total: u64) {
        let _ = (done, total);
    }

    /// A check ended.
    fn finished(&mut self, outcome: &Outcome) {
        let _ = outcome;
    }
}

/// Sees nothing.
impl Observer for () {}

/// The addresses of `target`, `HOST` or `HOST:PORT` (`[v6]:PORT` for IPv6 with a port), with
/// `default_port` when it has none.
pub fn resolve(target: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = split_host_port(target, default_port)?;
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("cannot resolve {host}: no address"));
    }
    Ok(addresses)
}

/// `HOST[:PORT]` as host and port; an IPv6 address alone needs no brackets.
fn split_host_port(target: &str, default_port: u16) -> Result<(&str, u16), String> {
    if let Ok(address) = target.parse::<SocketAddr>() {
        // Keep the host as written for the resolver; the port is the address's.
        let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
        return Ok((host.trim_matches(['[', ']']), address.port()));
    }
    if target.parse::<std::net::IpAddr>().is_ok() {
        return Ok((target, default_port));
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            let port = port
                .parse()
                .map_err(|_| format!("not a port: {port} (in {target})"))?;
            Ok((host, port))
        }
        Some(_) => Err(format!("not a host: {target}")),
        None if target.is_empty() => Err("no host given".into()),
        None => Ok((target, default_port)),
    }
}

/// Runs the server checks against the server at `addresses` (the first that accepts a
/// connection is the one checked).
pub fn check_server(
    addresses: &[SocketAddr],
    settings: &Settings,
    observer: &mut dyn Observer,
) -> Report {
    server::run(addresses, settings, observer)
}

/// Waits on `listener` for one client (at most `settings.wait`), then runs the client checks
/// on its connection.
pub fn check_client(
    listener: &TcpListener,
    settings: &Settings,
    observer: &mut dyn Observer,
) -> Report {
    client::run(listener, settings, observer)
}

/// What a check concluded.
struct Verdict {
    status: Status,
    message: String,
    figures: Vec<Figure>,
}

impl Verdict {
    fn pass(message: impl Into<String>) -> Self {
        Self::new(Status::Pass, message.into())
    }

    fn fail(message: impl Into<String>) -> Self {
        Self::new(Status::Fail, message.into())
    }

    fn skip(message: impl Into<String>) -> Self {
        Self::new(Status::Skip, message.into())
    }

    fn new(status: Status, message: String) -> Self {
        Self {
            status,
            message,
            figures: Vec::new(),
        }
    }

    fn with(mut self, figure: Figure) -> Self {
        self.figures.push(figure);
        self
    }
}

/// What a running check may use: the settings, its time limits, and the observer for its
/// progress.
struct Ctx<'a> {
    settings: &'a Settings,
    limits: Limits,
    observer: &'a mut dyn Observer,
}

impl Ctx<'_> {
    fn progress(&mut self, done: usize, total: usize) {
        self.observer.progress(done as u64, total as u64);
    }
}

/// Runs checks one after another and keeps their outcomes.
struct Runner<'a> {
    settings: &'a Settings,
    observer: &'a mut dyn Observer,
    checks: Vec<Outcome>,
}

impl<'a> Runner<'a> {
    fn new(settings: &'a Settings, observer: &'a mut dyn Observer) -> Self {
        Self {
            settings,
            observer,
            checks: Vec::new(),
        }
    }

    /// Runs the check `name`; its status.
    fn run(&mut self, name: &'static str, check: impl FnOnce(&mut Ctx<'_>) -> Verdict) -> Status {
        self.observer.started(name);
        let started = Instant::now();
        let mut ctx = Ctx {
            settings: self.settings,
            limits: Limits::new(self.settings.timeout),
            observer: &mut *self.observer,
        };
        let verdict = check(&mut ctx);
        self.record(name, verdict, started.elapsed())
    }

    /// Records the check `name` as not run, because of `why`.
    fn skip(&mut self, name: &'static str, why: &str) {
        self.observer.started(name);
        self.record(
            name,
            Verdict::skip(format!("not run: {why}")),
            Duration::ZERO,
        );
    }

    fn record(&mut self, name: &'static str, verdict: Verdict, took: Duration) -> Status {
        let outcome = Outcome {
            name,
            status: verdict.status,
            message: verdict.message,
            figures: verdict.figures,
            took,
        };
        self.observer.finished(&outcome);
        self.checks.push(outcome);
        verdict.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split_with_the_default_port_when_none_is_given() {
        assert_eq!(
            split_host_port("192.168.4.1", 5001),
            Ok(("192.168.4.1", 5001))
        );
        assert_eq!(
            split_host_port("192.168.4.1:6000", 5001),
            Ok(("192.168.4.1", 6000))
        );
        assert_eq!(
            split_host_port("board.local", 5001),
            Ok(("board.local", 5001))
        );
        assert_eq!(split_host_port("localhost:7", 5001), Ok(("localhost", 7)));
        assert_eq!(split_host_port("::1", 5001), Ok(("::1", 5001)));
        assert_eq!(split_host_port("[::1]:7", 5001), Ok(("::1", 7)));
        assert!(split_host_port("host:port", 5001)
            .unwrap_err()
            .contains("not a port"));
        assert!(split_host_port("", 5001).is_err());
    }

    #[test]
    fn resolve_gives_socket_addresses_or_says_why_not() {
        assert_eq!(
            resolve("127.0.0.1", 5001),
            Ok(vec!["127.0.0.1:5001".parse().unwrap()])
        );
        assert!(resolve("no-such-host.invalid", 5001)
            .unwrap_err()
            .starts_with("cannot resolve no-such-host.invalid"));
    }
}
