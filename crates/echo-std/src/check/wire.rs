//! Talking to the peer under test: time limits, payloads, sending data while reading its echo,
//! and saying precisely how an echo differs from what was sent.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::CHECK_LIMIT_FACTOR;

/// After an echo was seen to differ, reading stops once nothing more came for this long.
const QUIET: Duration = Duration::from_millis(500);

/// After an echo was seen to differ, at most this many bytes more than were sent are read.
const SLACK: usize = 64 << 10;

/// Reads and writes of the big transfers.
const CHUNK: usize = 64 << 10;

/// Up to this size a message is written before its echo is read, without a writer thread:
/// it fits in any socket buffer, and round trips are timed without a thread's start.
const INLINE_WRITE: usize = 4 << 10;

/// How long a check may wait: `idle` for each move of the peer, and `CHECK_LIMIT_FACTOR`
/// times that for the whole check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    idle: Duration,
    started: Instant,
    whole: Duration,
}

impl Limits {
    pub(crate) fn new(idle: Duration) -> Self {
        Self {
            idle,
            started: Instant::now(),
            whole: idle.saturating_mul(CHECK_LIMIT_FACTOR),
        }
    }

    /// The longest the next wait may be, `None` once the check's time is up.
    pub(crate) fn wait(&self) -> Option<Duration> {
        let left = self.whole.saturating_sub(self.started.elapsed());
        // Socket timeouts cannot be zero.
        (left >= Duration::from_millis(1)).then(|| self.idle.min(left))
    }

    /// The longest wait for the peer's next move (`--timeout`).
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }

    /// Why a wait that just ran out ended: the wait's own limit or the check's.
    pub(crate) fn timed_out(&self) -> String {
        if self.started.elapsed() + Duration::from_millis(5) >= self.whole {
            format!(
                "timed out after {}, the limit of a whole check ({CHECK_LIMIT_FACTOR} x --timeout)",
                seconds(self.whole)
            )
        } else {
            format!("timed out after {}", seconds(self.idle))
        }
    }
}

/// `12.5 s`.
pub(crate) fn seconds(time: Duration) -> String {
    format!("{:.1} s", time.as_secs_f64())
}

/// `len` pseudo-random bytes, every value from 0 to 255 (xorshift64*).
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// `len` bytes of pseudo-random printable ASCII in lines of 64 (valid UTF-8 however it is
/// split, for servers that handle lines or text).
pub(crate) fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = random_bytes(len, seed);
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = if i % 64 == 63 {
            b'\n'
        } else {
            b' ' + *byte % 95
        };
    }
    bytes
}

/// A connection's receive window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Window {
    /// What the system gives.
    Plain,
    /// A small receive buffer (which also stops the kernel from growing it) and segments of
    /// at most 1460 bytes, as over Ethernet or WiFi: the peer's send buffer then stays small,
    /// even on loopback, where a 64 KiB segment size would let it grow to megabytes.
    Small,
}

/// The receive buffer of a [`Window::Small`].
const SMALL_WINDOW: usize = 16 << 10;

/// The segment size of a [`Window::Small`]: Ethernet's.
#[cfg(unix)]
const ETHERNET_MSS: u32 = 1460;

/// Connects to `address` with `window`, failing within the limits.
pub(crate) fn connect(
    address: SocketAddr,
    limits: &Limits,
    window: Window,
) -> Result<TcpStream, String> {
    let Some(wait) = limits.wait() else {
        return Err(limits.timed_out());
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    if window == Window::Small {
        socket
            .set_recv_buffer_size(SMALL_WINDOW)
            .map_err(|e| format!("cannot set the receive buffer: {e}"))?;
        // Announced in the SYN, so it bounds the peer's segments too.
        #[cfg(unix)]
        socket
            .set_tcp_mss(ETHERNET_MSS)
            .map_err(|e| format!("cannot set the segment size: {e}"))?;
    }
    match socket.connect_timeout(&address.into(), wait) {
        Ok(()) => {}
        Err(e) if is_timeout(&e) => {
            return Err(format!(
                "cannot connect to {address}: {}",
                limits.timed_out()
            ))
        }
        Err(e) => return Err(format!("cannot connect to {address}: {e}")),
    }
    let stream = TcpStream::from(socket);
    // Small messages go out at once, as separate segments.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// Closes `stream` with a reset (RST) instead of a FIN.
pub(crate) fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// How reading an echo ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Every byte came back.
    Complete,
    /// The bytes differ from what was sent, and no more came.
    Differs,
    /// A shorter wait asked for ran out (see [`Reading::until`]).
    Waiting,
    /// The peer closed the connection (FIN).
    Closed,
    /// The connection was reset.
    Reset,
    /// A wait ran out; why, in words.
    TimedOut(String),
    /// Reading failed otherwise.
    Failed(io::Error),
}

/// The echo of one message as it comes in, compared with what was sent.
pub(crate) struct Reading<'a> {
    sent: &'a [u8],
    got: Vec<u8>,
    differs_at: Option<usize>,
    piece: usize,
}

impl<'a> Reading<'a> {
    pub(crate) fn new(sent: &'a [u8]) -> Self {
        Self {
            sent,
            got: Vec::with_capacity(sent.len()),
            differs_at: None,
            piece: CHUNK,
        }
    }

    /// Reads at most `piece` bytes at a time.
    pub(crate) fn in_pieces(mut self, piece: usize) -> Self {
        self.piece = piece;
        self
    }

    pub(crate) fn got(&self) -> &[u8] {
        &self.got
    }

    /// Reads until `len` bytes of the echo are in; `None` then. Never reads past `len` while
    /// the echo matches (the next bytes are another check's), but once it differs, reads on
    /// until nothing came for [`QUIET`] (to see how much was lost). Each wait lasts at most
    /// `short` when given ([`End::Waiting`] when it runs out), and what `limits` allow.
    pub(crate) fn until(
        &mut self,
        stream: &TcpStream,
        len: usize,
        limits: &Limits,
        short: Option<Duration>,
        progress: &mut dyn FnMut(usize),
    ) -> Option<End> {
        let mut buffer = vec![0; self.piece];
        loop {
            let wanted = match self.differs_at {
                None => len.saturating_sub(self.got.len()),
                Some(_) => (self.sent.len() + SLACK).saturating_sub(self.got.len()),
            };
            if wanted == 0 {
                return self.differs_at.map(|_| End::Differs);
            }
            let Some(mut wait) = limits.wait() else {
                return Some(End::TimedOut(limits.timed_out()));
            };
            let mut shortened = false;
            if let Some(short) = short.or(self.differs_at.map(|_| QUIET)) {
                shortened = short < wait;
                wait = wait.min(short);
            }
            if let Err(e) = stream.set_read_timeout(Some(wait)) {
                return Some(End::Failed(e));
            }
            let piece = wanted.min(buffer.len());
            match (&*stream).read(&mut buffer[..piece]) {
                Ok(0) => return Some(End::Closed),
                Ok(n) => {
                    self.take(&buffer[..n]);
                    progress(self.got.len());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    return Some(match (self.differs_at, shortened) {
                        (Some(_), _) => End::Differs,
                        (None, true) => End::Waiting,
                        (None, false) => End::TimedOut(limits.timed_out()),
                    })
                }
                Err(e) if is_reset(&e) => return Some(End::Reset),
                Err(e) => return Some(End::Failed(e)),
            }
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.differs_at.is_none() {
            let at = self.got.len();
            let expected = self.sent.get(at..).unwrap_or_default();
            let differs = bytes.iter().zip(expected).position(|(a, b)| a != b);
            self.differs_at = differs
                .or((bytes.len() > expected.len()).then_some(expected.len()))
                .map(|i| at + i);
        }
        self.got.extend_from_slice(bytes);
    }

    /// The echo so far, ended by `end`.
    pub(crate) fn finish(self, end: End, took: Duration) -> Echo {
        Echo {
            got: self.got,
            end,
            took,
        }
    }
}

/// What came back for a message.
#[derive(Debug)]
pub(crate) struct Echo {
    pub(crate) got: Vec<u8>,
    pub(crate) end: End,
    /// From the first byte written to the last byte read.
    pub(crate) took: Duration,
}

/// How a message is sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Send<'a> {
    data: &'a [u8],
    stall: Duration,
    piece: usize,
    half_close: bool,
}

impl<'a> Send<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            stall: Duration::ZERO,
            piece: CHUNK,
            half_close: false,
        }
    }

    /// Reads nothing for `stall` after the writing started, then reads `piece` bytes at a
    /// time.
    pub(crate) fn reading_slowly(mut self, stall: Duration, piece: usize) -> Self {
        self.stall = stall;
        self.piece = piece;
        self
    }

    /// Shuts the sending side down (FIN) once everything is written.
    pub(crate) fn then_half_close(mut self) -> Self {
        self.half_close = true;
        self
    }
}

/// Sends `send.data` on `stream` while reading its echo (from another thread when it is
/// bigger than a socket buffer holds for sure), until all of it came back or the echo went
/// wrong.
pub(crate) fn exchange(
    stream: &TcpStream,
    send: Send<'_>,
    limits: &Limits,
    progress: &mut dyn FnMut(usize),
) -> Echo {
    let started = Instant::now();
    let mut reading = Reading::new(send.data).in_pieces(send.piece);
    if send.data.len() <= INLINE_WRITE && send.stall.is_zero() {
        if let Err(end) = write_all(stream, send.data, limits, send.half_close) {
            return reading.finish(end, started.elapsed());
        }
        let end = reading.until(stream, send.data.len(), limits, None, progress);
        return reading.finish(end.unwrap_or(End::Complete), started.elapsed());
    }
    thread::scope(|scope| {
        let writer = scope.spawn(|| write_all(stream, send.data, limits, send.half_close));
        if let Some(stall) = limits.wait().map(|wait| wait.min(send.stall)) {
            thread::sleep(stall);
        }
        let end = reading.until(stream, send.data.len(), limits, None, progress);
        let took = started.elapsed();
        if end.is_some() {
            // The writer may be stuck behind echo nobody reads: read it away until the writer
            // is done (its writes time out within the limits).
            drain_while(stream, || !writer.is_finished());
        }
        // The reading tells what went wrong; the writer's error adds nothing to it.
        let _ = writer.join();
        reading.finish(end.unwrap_or(End::Complete), took)
    })
}

/// Writes all of `data` (then a FIN when `half_close`), each write waiting at most what the
/// limits allow.
fn write_all(
    stream: &TcpStream,
    data: &[u8],
    limits: &Limits,
    half_close: bool,
) -> Result<(), End> {
    let mut rest = data;
    while !rest.is_empty() {
        let wait = limits
            .wait()
            .ok_or_else(|| End::TimedOut(limits.timed_out()))?;
        stream.set_write_timeout(Some(wait)).map_err(End::Failed)?;
        let piece = rest.len().min(CHUNK);
        match (&*stream).write(&rest[..piece]) {
            Ok(0) => return Err(End::Closed),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(End::TimedOut(limits.timed_out())),
            Err(e) if is_reset(&e) => return Err(End::Reset),
            Err(e) => return Err(End::Failed(e)),
        }
    }
    if half_close {
        stream.shutdown(Shutdown::Write).map_err(End::Failed)?;
    }
    Ok(())
}

/// Reads and discards what comes while `going()`, until the connection ends.
fn drain_while(stream: &TcpStream, mut going: impl FnMut() -> bool) {
    let mut buffer = vec![0; CHUNK];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    while going() {
        match (&*stream).read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Reads and discards what comes until nothing came for [`QUIET`], or at most `limit`; whether
/// the connection is still there.
pub(crate) fn drain(stream: &TcpStream, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut buffer = vec![0; CHUNK];
    if stream.set_read_timeout(Some(QUIET)).is_err() {
        return false;
    }
    while Instant::now() < until {
        match (&*stream).read(&mut buffer) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Waits for the peer to close the connection: how long it took, or why it did not.
pub(crate) fn wait_for_close(stream: &TcpStream, limits: &Limits) -> Result<Duration, String> {
    let started = Instant::now();
    let mut extra = 0;
    let mut buffer = [0; 1024];
    loop {
        let Some(wait) = limits.wait() else {
            return Err(limits.timed_out());
        };
        stream
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match (&*stream).read(&mut buffer) {
            Ok(0) if extra == 0 => return Ok(started.elapsed()),
            Ok(0) => return Err(format!("{extra} bytes more than were sent came back")),
            Ok(n) => extra += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(limits.timed_out()),
            // A reset after everything came back still ends the connection.
            Err(e) if is_reset(&e) => return Ok(started.elapsed()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Whether `echo` is exactly `sent`; if not, what went wrong, in words. `peer` names the other
/// side ("server", "client").
pub(crate) fn judge(sent: &[u8], echo: &Echo, peer: &str) -> Result<(), String> {
    let got = &echo.got[..];
    if got == sent {
        return Ok(());
    }
    let common = got.len().min(sent.len());
    let Some(at) = got[..common].iter().zip(sent).position(|(a, b)| a != b) else {
        if got.len() > sent.len() {
            return Err(format!(
                "{} bytes more than were sent came back",
                got.len() - sent.len()
            ));
        }
        return Err(cut_short(sent.len(), got.len(), &echo.end, peer));
    };
    if sent.len() <= 64 {
        return Err(format!(
            "sent {}, got {}{}",
            escaped(sent),
            escaped(got),
            after(&echo.end, peer)
        ));
    }
    if let Some(gap) = gap(sent, got, at) {
        // Bytes just before the gap that equal those just before its end could have been lost
        // instead: name the earliest offset the echo allows.
        let at = (0..at)
            .rev()
            .take_while(|&i| sent[i] == sent[i + gap])
            .last()
            .unwrap_or(at);
        let lost = sent.len().saturating_sub(got.len());
        return Err(if lost > gap {
            format!("lost {lost} bytes: the first {gap} at offset {at}")
        } else {
            format!("lost {gap} bytes at offset {at}")
        });
    }
    if let Some(extra) = gap(got, sent, at) {
        return Err(format!(
            "{extra} bytes that were not sent came back at offset {at}"
        ));
    }
    Err(format!(
        "the echo differs from offset {at} on: sent 0x{:02x}, got 0x{:02x} ({} bytes came back for {} sent)",
        sent[at],
        got[at],
        got.len(),
        sent.len()
    ))
}

/// Where the bytes of `short` from `at` on reappear in `long` after a gap: its length.
fn gap(long: &[u8], short: &[u8], at: usize) -> Option<usize> {
    // 32 random bytes match at a wrong offset with a negligible chance.
    const WINDOW: usize = 32;
    let needle = short.get(at..at + WINDOW)?;
    long.get(at + 1..)?
        .windows(WINDOW)
        .position(|window| window == needle)
        .map(|i| i + 1)
}

/// Why only `got` of `sent` bytes came back, the rest being right.
fn cut_short(sent: usize, got: usize, end: &End, peer: &str) -> String {
    match end {
        End::Closed => {
            format!("the {peer} closed the connection after echoing {got} of {sent} bytes")
        }
        End::Reset => format!("the connection was reset after {got} of {sent} bytes echoed"),
        End::TimedOut(why) => format!("{why} with {got} of {sent} bytes echoed"),
        End::Failed(e) => format!("{e} after {got} of {sent} bytes echoed"),
        End::Complete | End::Differs | End::Waiting => {
            format!("{got} of {sent} bytes echoed")
        }
    }
}

/// How the connection ended after a wrong echo, when that adds something.
pub(crate) fn after(end: &End, peer: &str) -> String {
    match end {
        End::Closed => format!(", then the {peer} closed the connection"),
        End::Reset => ", then the connection was reset".into(),
        End::TimedOut(why) => format!(", then nothing more ({why})"),
        End::Failed(e) => format!(", then {e}"),
        End::Complete | End::Differs | End::Waiting => String::new(),
    }
}

/// `bytes` in double quotes, printable ASCII as is and the rest as `\xNN`.
pub(crate) fn escaped(bytes: &[u8]) -> String {
    let mut text = String::from("\"");
    for &byte in bytes {
        match byte {
            b'"' => text.push_str("\\\""),
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            b'\\' => text.push_str("\\\\"),
            b' '..=b'~' => text.push(char::from(byte)),
            _ => text.push_str(&format!("\\x{byte:02x}")),
        }
    }
    text.push('"');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(got: &[u8], end: End) -> Echo {
        Echo {
            got: got.to_vec(),
            end,
            took: Duration::ZERO,
        }
    }

    #[test]
    fn an_exact_echo_is_right() {
        let sent = text(1000, 1);
        assert_eq!(judge(&sent, &echo(&sent, End::Complete), "server"), Ok(()));
    }

    #[test]
    fn a_gap_is_lost_bytes_at_an_offset() {
        let sent = text(10_000, 2);
        let mut got = sent[..4096].to_vec();
        got.extend_from_slice(&sent[5000..]);
        assert_eq!(
            judge(&sent, &echo(&got, End::Differs), "server"),
            Err("lost 904 bytes at offset 4096".into())
        );
        // Two gaps: the first, and the total.
        got.truncate(8000);
        got.extend_from_slice(&sent[9000..]);
        assert_eq!(
            judge(&sent, &echo(&got, End::Differs), "server"),
            Err("lost 1000 bytes: the first 904 at offset 4096".into())
        );
    }

    #[test]
    fn a_short_echo_says_how_it_ended() {
        let sent = random_bytes(1000, 3);
        for (end, message) in [
            (
                End::Closed,
                "the server closed the connection after echoing 10 of 1000 bytes",
            ),
            (
                End::Reset,
                "the connection was reset after 10 of 1000 bytes echoed",
            ),
            (
                End::TimedOut("timed out after 2.0 s".into()),
                "timed out after 2.0 s with 10 of 1000 bytes echoed",
            ),
        ] {
            assert_eq!(
                judge(&sent, &echo(&sent[..10], end), "server"),
                Err(message.into())
            );
        }
    }

    #[test]
    fn a_short_message_shows_both_sides_escaped() {
        let sent = "你".as_bytes();
        assert_eq!(
            judge(sent, &echo(b"\xef\xbf\xbd", End::Differs), "client"),
            Err(r#"sent "\xe4\xbd\xa0", got "\xef\xbf\xbd""#.into())
        );
        assert_eq!(
            judge(sent, &echo(b"", End::Closed), "client"),
            Err("the client closed the connection after echoing 0 of 3 bytes".into())
        );
    }

    #[test]
    fn inserted_and_changed_bytes_are_told_apart() {
        let sent = text(1000, 4);
        let mut got = sent[..100].to_vec();
        got.extend_from_slice(b"inserted");
        got.extend_from_slice(&sent[100..]);
        assert_eq!(
            judge(&sent, &echo(&got, End::Differs), "server"),
            Err("8 bytes that were not sent came back at offset 100".into())
        );
        let mut got = sent.clone();
        got[500] ^= 0x01;
        let message = judge(&sent, &echo(&got, End::Differs), "server").unwrap_err();
        assert!(
            message.starts_with("the echo differs from offset 500 on"),
            "{message}"
        );
    }

    #[test]
    fn text_is_printable_lines_and_random_bytes_take_every_value() {
        let text = text(64 * 100, 5);
        assert!(text.iter().enumerate().all(|(i, &b)| if i % 64 == 63 {
            b == b'\n'
        } else {
            (b' '..=b'~').contains(&b)
        }));
        let mut seen = [false; 256];
        for byte in random_bytes(1 << 16, 6) {
            seen[usize::from(byte)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_ne!(random_bytes(64, 1), random_bytes(64, 2));
    }

    #[test]
    fn limits_end_a_check_after_the_factor_of_the_timeout() {
        let limits = Limits::new(Duration::from_millis(10));
        assert_eq!(limits.wait(), Some(Duration::from_millis(10)));
        assert_eq!(limits.timed_out(), "timed out after 0.0 s");
        thread::sleep(Duration::from_millis(70));
        assert_eq!(limits.wait(), None);
        assert!(limits.timed_out().contains("the limit of a whole check"));
    }
}
