//! The checks of an echo server, each on connections of its own.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::report::bytes as size;
use super::wire::{
    self, connect, escaped, exchange, judge, random_bytes, seconds, text, Echo, End, Reading, Send,
    Window,
};
use super::{Ctx, Figure, Mode, Report, Runner, Settings, Status, Verdict};

/// The server checks, in the order they run.
pub const SERVER_CHECKS: [&str; 13] = [
    "short-line",
    "random-binary",
    "split-utf8",
    "invalid-utf8",
    "large-message",
    "partial-send",
    "clients",
    "silent-client",
    "half-close",
    "reset",
    "churn",
    "throughput",
    "latency",
];

/// The first line every check of the server starts from.
pub(crate) const SHORT_LINE: &[u8] = b"hello, echo\n";

/// A multi-byte character of each length (3, 4 and 2 bytes), sent one byte at a time.
pub(crate) const SPLIT_UTF8: &str = "你😀é";

/// How long `split-utf8` waits for each byte's echo before sending the next.
const SPLIT_PAUSE: Duration = Duration::from_millis(100);

/// Bytes that are UTF-8 nowhere, then every control byte.
pub(crate) fn invalid_utf8() -> Vec<u8> {
    let mut bytes =
        b"\xff\xfe\xc3\x28\x80\xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80\x80\xe4\xbd".to_vec();
    bytes.extend(0..0x20);
    bytes.push(0x7f);
    bytes
}

/// The size of `large-message`: 64 times the tutorial's `recv(1024)`, and more than a
/// board's TCP window.
pub(crate) const LARGE_MESSAGE: usize = 64 << 10;

/// How long `partial-send` reads nothing (at most half the timeout).
const PARTIAL_SEND_STALL: Duration = Duration::from_secs(1);

/// Cycles of `churn`.
const CHURN_CYCLES: usize = 100;

/// Round trips of `latency`, and the time it may take at most.
const LATENCY_ROUND_TRIPS: usize = 200;
const LATENCY_TIME: Duration = Duration::from_secs(3);
const LATENCY_MESSAGE: usize = 64;

/// The server under test: its addresses, and the one that answered.
struct Server<'a> {
    addresses: &'a [SocketAddr],
    address: Option<SocketAddr>,
}

impl Server<'_> {
    fn connect(&self, ctx: &Ctx<'_>) -> Result<TcpStream, String> {
        self.connect_with(ctx, Window::Plain)
    }

    fn connect_with(&self, ctx: &Ctx<'_>, window: Window) -> Result<TcpStream, String> {
        let address = self.address.unwrap_or(self.addresses[0]);
        connect(address, &ctx.limits, window)
    }

    /// Connects to the first address that accepts, and keeps it for the later checks.
    fn connect_first(&mut self, ctx: &Ctx<'_>) -> Result<TcpStream, String> {
        let mut failure = String::from("no address");
        for &address in self.addresses {
            match connect(address, &ctx.limits, Window::Plain) {
                Ok(stream) => {
                    self.address = Some(address);
                    return Ok(stream);
                }
                Err(e) => failure = e,
            }
        }
        Err(failure)
    }
}

pub(crate) fn run(
    addresses: &[SocketAddr],
    settings: &Settings,
    observer: &mut dyn super::Observer,
) -> Report {
    let mut server = Server {
        addresses,
        address: None,
    };
    let mut runner = Runner::new(settings, observer);
    let gate = runner.run(SERVER_CHECKS[0], |ctx| short_line(ctx, &mut server));
    for name in &SERVER_CHECKS[1..] {
        if gate != Status::Pass {
            runner.skip(name, "the server did not echo a short line (short-line)");
            continue;
        }
        runner.run(name, |ctx| match *name {
            "random-binary" => on_new_connection(ctx, &server, random_binary),
            "split-utf8" => on_new_connection(ctx, &server, split_utf8),
            "invalid-utf8" => on_new_connection(ctx, &server, invalid_utf8_verbatim),
            "large-message" => on_new_connection(ctx, &server, large_message),
            "partial-send" => partial_send(ctx, &server),
            "clients" => clients(ctx, &server),
            "silent-client" => silent_client(ctx, &server),
            "half-close" => half_close(ctx, &server),
            "reset" => reset(ctx, &server),
            "churn" => churn(ctx, &server),
            "throughput" => throughput(ctx, &server),
            "latency" => latency(ctx, &server),
            other => unreachable!("no check {other}"),
        });
    }
    Report {
        mode: Mode::Server,
        peer: server.address.or(addresses.first().copied()),
        settings: settings.clone(),
        checks: runner.checks,
    }
}

fn on_new_connection(
    ctx: &mut Ctx<'_>,
    server: &Server<'_>,
    check: fn(&mut Ctx<'_>, &TcpStream, &str) -> Verdict,
) -> Verdict {
    match server.connect(ctx) {
        Ok(stream) => check(ctx, &stream, "server"),
        Err(e) => Verdict::fail(e),
    }
}

fn short_line(ctx: &mut Ctx<'_>, server: &mut Server<'_>) -> Verdict {
    match server.connect_first(ctx) {
        Ok(stream) => echoes_a_short_line(ctx, &stream, "server"),
        Err(e) => Verdict::fail(e),
    }
}

/// Sends `data` on `stream` and reads its echo, reporting progress.
fn send(ctx: &mut Ctx<'_>, stream: &TcpStream, send: Send<'_>, total: usize) -> Echo {
    let limits = ctx.limits;
    exchange(stream, send, &limits, &mut |done| ctx.progress(done, total))
}

pub(crate) fn echoes_a_short_line(ctx: &mut Ctx<'_>, stream: &TcpStream, peer: &str) -> Verdict {
    let echo = send(ctx, stream, Send::new(SHORT_LINE), SHORT_LINE.len());
    match judge(SHORT_LINE, &echo, peer) {
        Ok(()) => Verdict::pass(format!("{} came back as sent", escaped(SHORT_LINE)))
            .with(Figure::millis("round_trip_ms", "round trip", echo.took)),
        Err(e) => Verdict::fail(e),
    }
}

pub(crate) fn random_binary(ctx: &mut Ctx<'_>, stream: &TcpStream, peer: &str) -> Verdict {
    let bytes = ctx.settings.bytes;
    let data = random_bytes(bytes, 1);
    let echo = send(ctx, stream, Send::new(&data), bytes);
    match judge(&data, &echo, peer) {
        Ok(()) => Verdict::pass(format!(
            "{} of random bytes came back byte-exact, written while the echo was read",
            size(bytes)
        ))
        .with(Figure::bytes("bytes", "sent", bytes))
        .with(Figure::seconds("time_s", "in", echo.took))
        .with(Figure::rate(bytes, echo.took)),
        Err(e) => Verdict::fail(e),
    }
}

pub(crate) fn split_utf8(ctx: &mut Ctx<'_>, stream: &TcpStream, peer: &str) -> Verdict {
    let sent = SPLIT_UTF8.as_bytes();
    let limits = ctx.limits;
    let started = Instant::now();
    let mut reading = Reading::new(sent);
    let mut end = None;
    for (i, byte) in sent.iter().enumerate() {
        if let Err(e) = (&*stream).write_all(std::slice::from_ref(byte)) {
            end = Some(End::Failed(e));
            break;
        }
        // Give the server this byte alone: wait a little for its echo before the next.
        // A wrong echo is seen whole once every byte was sent.
        match reading.until(stream, i + 1, &limits, Some(SPLIT_PAUSE), &mut |_| {}) {
            None | Some(End::Waiting | End::Differs) => {}
            Some(other) => {
                end = Some(other);
                break;
            }
        }
    }
    let end = end.or_else(|| reading.until(stream, sent.len(), &limits, None, &mut |_| {}));
    let echo = reading.finish(end.unwrap_or(End::Complete), started.elapsed());
    match judge(sent, &echo, peer) {
        Ok(()) => Verdict::pass(format!(
            "{SPLIT_UTF8} sent one byte per write came back as sent"
        ))
        .with(Figure::bytes("bytes", "sent", sent.len())),
        Err(e) => Verdict::fail(format!("{SPLIT_UTF8} sent one byte per write: {e}")),
    }
}

pub(crate) fn invalid_utf8_verbatim(ctx: &mut Ctx<'_>, stream: &TcpStream, peer: &str) -> Verdict {
    let sent = invalid_utf8();
    let echo = send(ctx, stream, Send::new(&sent), sent.len());
    match judge(&sent, &echo, peer) {
        Ok(()) => {
            Verdict::pass("invalid UTF-8 and every control byte came back verbatim".to_string())
                .with(Figure::bytes("bytes", "sent", sent.len()))
        }
        Err(e) => Verdict::fail(e),
    }
}

pub(crate) fn large_message(ctx: &mut Ctx<'_>, stream: &TcpStream, peer: &str) -> Verdict {
    let sent = text(LARGE_MESSAGE, 2);
    let echo = send(ctx, stream, Send::new(&sent), sent.len());
    match judge(&sent, &echo, peer) {
        Ok(()) => Verdict::pass(format!(
            "a {} message in one write came back whole",
            size(LARGE_MESSAGE)
        ))
        .with(Figure::bytes("bytes", "sent", sent.len()))
        .with(Figure::seconds("time_s", "in", echo.took)),
        Err(e) => Verdict::fail(format!(
            "a {} message in one write: {e}",
            size(LARGE_MESSAGE)
        )),
    }
}

fn partial_send(ctx: &mut Ctx<'_>, server: &Server<'_>) -> Verdict {
    // A small window, so that the server's sends fill up while this side does not read.
    let stream = match server.connect_with(ctx, Window::Small) {
        Ok(stream) => stream,
        Err(e) => return Verdict::fail(e),
    };
    let bytes = ctx.settings.bytes;
    let sent = text(bytes, 3);
    let stall = PARTIAL_SEND_STALL.min(ctx.limits.idle() / 2);
    let how = Send::new(&sent).reading_slowly(stall, 4 << 10);
    let echo = send(ctx, &stream, how, bytes);
    match judge(&sent, &echo, "server") {
        Ok(()) => Verdict::pass(format!(
            "nothing lost of {} written while this client read nothing for {}",
            size(bytes),
            seconds(stall)
        ))
        .with(Figure::bytes("bytes", "sent", bytes))
        .with(Figure::seconds("time_s", "in", echo.took)),
        // A gap in the echo is what a server that drops the rest of a partial send leaves.
        Err(e) if e.starts_with("lost ") => Verdict::fail(format!(
            "{e} (this client read nothing for {}, so the server's sends were partial: \
             what they did not take must be sent later, not dropped)",
            seconds(stall)
        )),
        Err(e) => Verdict::fail(e),
    }
}

/// One of the `clients` check's connections.
struct Client {
    line: Vec<u8>,
    stream: Option<TcpStream>,
    got: Vec<u8>,
    /// What went wrong with it, if anything.
    trouble: Option<String>,
}

impl Client {
    fn served(&self) -> bool {
        self.got == self.line
    }

    fn waiting(&self) -> bool {
        !self.served() && self.trouble.is_none() && self.stream.is_some()
    }

    /// Reads what has come, without waiting.
    fn poll(&mut self) {
        let Some(stream) = &self.stream else { return };
        let mut buffer = [0; 256];
        let wanted = self.line.len().saturating_sub(self.got.len()).max(1);
        match (&*stream).read(&mut buffer[..wanted.min(256)]) {
            Ok(0) => self.trouble = Some("the server closed it".into()),
            Ok(n) => {
                self.got.extend_from_slice(&buffer[..n]);
                if !self.line.starts_with(&self.got) {
                    self.trouble = Some(format!(
                        "sent {}, got {}",
                        escaped(&self.line),
                        escaped(&self.got)
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => self.trouble = Some(e.to_string()),
        }
    }
}

/// Polls the clients that still wait until none does or `wait` ran out; with `close_served`,
/// each is closed once served, making room for the others.
fn poll_until_served(clients: &mut [Client], wait: Duration, close_served: bool) {
    let until = Instant::now() + wait;
    while clients.iter().any(Client::waiting) && Instant::now() < until {
        for client in clients.iter_mut().filter(|c| c.waiting()) {
            client.poll();
            if close_served && client.served() {
                client.stream = None;
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn clients(ctx: &mut Ctx<'_>, server: &Server<'_>) -> Verdict {
    let n = ctx.settings.clients;
    let mut clients: Vec<Client> = (1..=n)
        .map(|i| Client {
            line: format!("client {i} of {n}\n").into_bytes(),
            stream: None,
            got: Vec::new(),
            trouble: None,
        })
        .collect();
    let mut refused = 0;
    for client in &mut clients {
        match server.connect(ctx) {
            Ok(stream) => client.stream = Some(stream),
            Err(e) => {
                refused += 1;
                client.trouble = Some(e);
            }
        }
    }
    for client in &mut clients {
        if let Some(stream) = &client.stream {
            let sent = (&*stream)
                .write_all(&client.line)
                .and_then(|()| stream.set_nonblocking(true));
            if let Err(e) = sent {
                client.trouble = Some(e.to_string());
            }
        }
    }
    let Some(wait) = ctx.limits.wait() else {
        return Verdict::fail(ctx.limits.timed_out());
    };
    poll_until_served(&mut clients, wait, false);
    let at_once = clients.iter().filter(|c| c.served()).count();
    // Those not served while all were open: are they once the served ones close?
    for client in clients.iter_mut().filter(|c| c.served()) {
        client.stream = None;
    }
    let waiting = clients.iter().filter(|c| c.waiting()).count();
    if waiting > 0 {
        if let Some(wait) = ctx.limits.wait() {
            poll_until_served(&mut clients, wait, true);
        }
    }
    let waited = clients.iter().filter(|c| c.served()).count() - at_once;
    let never = n - at_once - waited - refused;
    let verdict = if at_once == n {
        Verdict::pass(format!("{n} of {n} clients were served at once"))
    } else {
        let mut message = format!("{at_once} of {n} clients were served at once");
        if waited > 0 {
            message += &format!(", {waited} waited until others closed");
        }
        if never > 0 {
            message += &format!(", {never} never were");
        }
        if refused > 0 {
            message += &format!(", {refused} could not connect");
        }
        if let Some(trouble) = clients.iter().find_map(|c| c.trouble.as_deref()) {
            message += &format!(" ({trouble})");
        }
        if at_once > 0 {
            message += &format!(
                ": the server serves {at_once} client{} at a time, the check asks for {n} \
                 (--clients)",
                if at_once == 1 { "" } else { "s" }
            );
        }
        Verdict::fail(message)
    };
    verdict
        .with(Figure::count("clients", "clients", n))
        .with(Figure::count("served_at_once", "served at once", at_once))
        .with(Figure::count("waited", "waited", waited))
        .with(Figure::count(
            "never_served",
            "never served",
            never + refused,
        ))
}

fn silent_client(ctx: &mut Ctx<'_>, server: &Server<'_>) -> Verdict {
    let silent = match server.connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Verdict::fail(e),
    };
    // Let the server take the silent one first, as a one-at-a-time server would.
    thread::sleep(Duration::from_millis(100));
    let other = match server.connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Verdict::fail(format!("{e}, while a silent client was connected")),
    };
    let echo = send(ctx, &other, Send::new(SHORT_LINE), SHORT_LINE.len());
    let Err(e) = judge(SHORT_LINE, &echo, "server") else {
        return Verdict::pass("a client was served while another stayed connected and silent")
            .with(Figure::millis("echo_ms", "echo", echo.took));
    };
    // Whether the echo comes once the silent client is gone tells why it did not before.
    drop(silent);
    let mut later = Reading::new(SHORT_LINE);
    let limits = ctx.limits;
    let came = echo.got.is_empty()
        && later
            .until(&other, SHORT_LINE.len(), &limits, None, &mut |_| {})
            .is_none();
    Verdict::fail(if came {
        format!(
            "{e} while another client stayed connected and silent; the echo came once that \
             client closed: the server serves one client at a time"
        )
    } else {
        format!("{e} while another client stayed connected and silent")
    })
}

fn half_close(ctx: &mut Ctx<'_>, server: &Server<'_>) -> Verdict {
    let stream = match server.connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Verdict::fail(e),
    };
    let bytes = (ctx.settings.bytes / 4).max(1);
    let sent = text(bytes, 4);
    let echo = send(ctx, &stream, Send::new(&sent).then_half_close(), bytes);
    if let Err(e) = judge(&sent, &echo, "server") {
        return Verdict::fail(format!("after the client's FIN: {e}"));
    }
    match wire::wait_for_close(&stream, &ctx.limits) {
        Ok(after) => Verdict::pass(format!(
            "after the client's FIN all {} came back, then the server closed",
            size(bytes)
        ))
        .with(Figure::bytes("bytes", "sent", bytes))
        .with(Figure::millis("close_ms", "closed after", after)),
        Err(e) => Verdict::fail(format!(
            "all {} came back after the client's FIN, but the server did not close the \
             connection: {e}",
            size(bytes)
        )),
    }
}

fn reset(ctx: &mut Ctx<'_>, server: &Server<'_>) -> Verdict {
    let doomed = match server.connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Verdict::fail(e),
    };
    let sent = text(64 << 10, 5);
    let limits = ctx.limits;
    let mut reading = Reading::new(&sent);
    let wrote = doomed
        .set_write_timeout(limits.wait())
        .and_then(|()| (&doomed).write_all(&sent));
    if let Err(e) = wrote {
        return Verdict::fail(format!("before the reset: {e}"));
    }
    // Some of the echo, so that the reset comes mid-stream, with echo still unread.
    if let Some(end) = reading.until(&doomed, 1, &limits, None, &mut |_| {}) {
        let echo = reading.finish(end, Duration::ZERO);
        let why = judge(&sent, &echo, "server").err().unwrap_or_default();
        return Verdict::fail(format!("before the reset: {why}"));
    }
    wire::reset(doomed);
    let started = Instant::now();
    let fresh = match server.connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Verdict::fail(format!("after a client reset its connection: {e}")),
    };
    let echo = send(ctx, &fresh, Send::new(SHORT_LINE), SHORT_LINE.len());
    match judge(SHORT_LINE, &echo, "server") {
        Ok(()) => {
            Verdict::pass("after a client reset its connection mid-stream, a new client was served")
                .with(Figure::millis(
                    "new_client_ms",
                    "new client served in",
                    started.elapsed(),
                ))
        }
        Err(e) => Verdict::fail(format!(
            "after a client reset its connection mid-stream, a new client: {e}"
        )),
    }
}

fn churn(ctx: &mut Ctx<'_>, server: &Server<'_>) -> Verdict {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for cycle in 1..=CHURN_CYCLES {
        let began = Instant::now();
        let line = format!("churn {cycle} of {CHURN_CYCLES}\n").into_bytes();
        let stream = match server.connect(ctx) {
            Ok(stream) => stream,
            Err(e) => return Verdict::fail(format!("cycle {cycle} of {CHURN_CYCLES}: {e}")),
        };
        let limits = ctx.limits;
        let echo = exchange(&stream, Send::new(&line), &limits, &mut |_| {});
        if let Err(e) = judge(&line, &echo, "server") {
            return Verdict::fail(format!("cycle {cycle} of {CHURN_CYCLES}: {e}"));
        }
        drop(stream);
        slowest = slowest.max(began.elapsed());
        ctx.progress(cycle, CHURN_CYCLES);
    }
    let took = started.elapsed();
    Verdict::pass(format!(
        "{CHURN_CYCLES} cycles of connect, echo a line, close"
    ))
    .with(Figure::count("cycles", "cycles", CHURN_CYCLES))
    .with(Figure::new(
        "cycles_per_s",
        "rate",
        CHURN_CYCLES as f64 / took.as_secs_f64().max(1e-9),
        super::Unit::PerSecond,
    ))
    .with(Figure::millis("slowest_ms", "slowest", slowest))
}

fn throughput(ctx: &mut Ctx<'_>, server: &Server<'_>) -> Verdict {
    let stream = match server.connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Verdict::skip(format!("not measured: {e}")),
    };
    let bytes = ctx.settings.bytes;
    let sent = text(bytes, 6);
    let echo = send(ctx, &stream, Send::new(&sent), bytes);
    match judge(&sent, &echo, "server") {
        Ok(()) => {
            let rate = Figure::rate(bytes, echo.took);
            Verdict::pass(format!(
                "{} echoed on one connection, full duplex",
                size(bytes)
            ))
            .with(rate)
            .with(Figure::bytes("bytes", "sent", bytes))
            .with(Figure::seconds("time_s", "in", echo.took))
        }
        Err(e) => Verdict::skip(format!("not measured: {e}")),
    }
}

fn latency(ctx: &mut Ctx<'_>, server: &Server<'_>) -> Verdict {
    let stream = match server.connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Verdict::skip(format!("not measured: {e}")),
    };
    let message = text(LATENCY_MESSAGE, 7);
    let until = Instant::now() + LATENCY_TIME;
    let mut times = Vec::with_capacity(LATENCY_ROUND_TRIPS);
    while times.len() < LATENCY_ROUND_TRIPS && Instant::now() < until {
        let limits = ctx.limits;
        let echo = exchange(&stream, Send::new(&message), &limits, &mut |_| {});
        if let Err(e) = judge(&message, &echo, "server") {
            return Verdict::skip(format!("not measured: round trip {}: {e}", times.len() + 1));
        }
        times.push(echo.took);
        ctx.progress(times.len(), LATENCY_ROUND_TRIPS);
    }
    times.sort();
    let (p50, p99) = (percentile(&times, 50), percentile(&times, 99));
    Verdict::pass(format!(
        "{LATENCY_MESSAGE}-byte messages echoed one at a time"
    ))
    .with(Figure::count("round_trips", "round trips", times.len()))
    .with(Figure::micros("p50_us", "p50", p50))
    .with(Figure::micros("p99_us", "p99", p99))
}

/// The nearest-rank percentile of sorted `times` (not empty).
fn percentile(times: &[Duration], percent: usize) -> Duration {
    let rank = (times.len() * percent).div_ceil(100).max(1);
    times[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let times: Vec<Duration> = (1..=200).map(Duration::from_micros).collect();
        assert_eq!(percentile(&times, 50), Duration::from_micros(100));
        assert_eq!(percentile(&times, 99), Duration::from_micros(198));
        assert_eq!(percentile(&times[..1], 99), Duration::from_micros(1));
    }

    #[test]
    fn the_utf8_payloads_are_what_their_checks_say() {
        assert_eq!(SPLIT_UTF8.len(), 9);
        assert!(std::str::from_utf8(&invalid_utf8()).is_err());
        assert!(invalid_utf8().contains(&0) && invalid_utf8().contains(&0x1b));
    }
}
