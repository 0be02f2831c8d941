//! The checks of an echo client, all on the one connection it makes.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::server::{
    echoes_a_short_line, invalid_utf8_verbatim, large_message, random_binary, split_utf8,
};
use super::wire::{self, after, escaped, seconds, End, Reading};
use super::{Ctx, Figure, Mode, Report, Runner, Settings, Status, Verdict};

/// The client checks, in the order they run.
pub const CLIENT_CHECKS: [&str; 6] = [
    "greeting",
    "short-line",
    "random-binary",
    "split-utf8",
    "invalid-utf8",
    "large-message",
];

/// How long bytes that follow the greeting unasked are waited for.
const AFTER_GREETING: Duration = Duration::from_millis(300);

pub(crate) fn run(
    listener: &TcpListener,
    settings: &Settings,
    observer: &mut dyn super::Observer,
) -> Report {
    let mut runner = Runner::new(settings, observer);
    let mut connection: Option<(TcpStream, SocketAddr)> = None;
    runner.run(CLIENT_CHECKS[0], |ctx| {
        let (stream, peer) = match accept(listener, ctx.settings.wait) {
            Ok(accepted) => accepted,
            Err(e) => return Verdict::fail(e),
        };
        let verdict = greeting(ctx, &stream);
        connection = Some((stream, peer));
        verdict
    });
    let peer = connection.as_ref().map(|(_, peer)| *peer);
    let mut gone: Option<String> = match &connection {
        None => Some("no client connected (greeting)".into()),
        Some(_) => None,
    };
    for &name in &CLIENT_CHECKS[1..] {
        if let Some(why) = &gone {
            runner.skip(name, why);
            continue;
        }
        let Some((stream, _)) = &connection else {
            unreachable!("gone is set without a connection")
        };
        let check = match name {
            "short-line" => echoes_a_short_line,
            "random-binary" => random_binary,
            "split-utf8" => split_utf8,
            "invalid-utf8" => invalid_utf8_verbatim,
            "large-message" => large_message,
            other => unreachable!("no check {other}"),
        };
        let status = runner.run(name, |ctx| check(ctx, stream, "client"));
        // What a failed check left unread would spoil the next one: read it away, and see
        // whether the connection is still there.
        if status == Status::Fail && !wire::drain(stream, settings.timeout) {
            gone = Some(format!("the client's connection ended ({name})"));
        }
    }
    if let Some((stream, _)) = connection {
        // The server's close, which ends the tutorial's client.
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    Report {
        mode: Mode::Client,
        peer,
        settings: settings.clone(),
        checks: runner.checks,
    }
}

/// The first client to connect within `wait`.
fn accept(listener: &TcpListener, wait: Duration) -> Result<(TcpStream, SocketAddr), String> {
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot tell where it listens: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {local}: {e}"))?;
    let until = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_nodelay(true))
                    .map_err(|e| format!("cannot use the connection from {peer}: {e}"))?;
                return Ok((stream, peer));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= until {
                    return Err(format!(
                        "no client connected to {local} within {}",
                        seconds(wait)
                    ));
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("cannot accept on {local}: {e}")),
        }
    }
}

fn greeting(ctx: &mut Ctx<'_>, stream: &TcpStream) -> Verdict {
    let expected = ctx.settings.greeting.clone();
    let limits = ctx.limits;
    let started = Instant::now();
    let mut reading = Reading::new(&expected);
    let end = reading.until(stream, expected.len(), &limits, None, &mut |_| {});
    let mut echo = reading.finish(end.unwrap_or(End::Complete), started.elapsed());
    if echo.got != expected {
        return Verdict::fail(format!(
            "expected the greeting {}, got {}{}",
            escaped(&expected),
            escaped(&echo.got),
            after(&echo.end, "client")
        ));
    }
    // Nothing may follow the greeting unasked: it would come back into the next check.
    let mut extra = Reading::new(&[]);
    let after = extra.until(stream, 1, &limits, Some(AFTER_GREETING), &mut |_| {});
    if let Some(End::Differs) = after {
        echo.got.extend_from_slice(extra.got());
        return Verdict::fail(format!(
            "expected the greeting {}, got {}",
            escaped(&expected),
            escaped(&echo.got)
        ));
    }
    Verdict::pass(format!("the client greeted with {}", escaped(&expected)))
        .with(Figure::bytes("bytes", "greeting", expected.len()))
        .with(Figure::millis("greeting_ms", "after connecting", echo.took))
}
