//! `echo-std check` on the command line: its options, a line per check as it ends (with a
//! progress bar on a terminal while a check takes more than a second), then the table or the
//! JSON report.

use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{
    check_client, check_server, resolve, Observer, Outcome, Settings, Status, DEFAULT_CLIENTS,
};

/// The port a client is waited for on by default (the `tap` example's client uses it).
pub const DEFAULT_CLIENT_PORT: u16 = 6000;

/// A progress bar appears once a check has taken this long.
const SHOW_PROGRESS_AFTER: Duration = Duration::from_secs(1);

const AFTER_HELP: &str = "\
Checks of a server, in order (a client's: greeting, then short-line to large-message):
  short-line     a short line comes back (if not, the rest are skipped)
  random-binary  --bytes of random bytes come back byte-exact, full duplex
  split-utf8     multi-byte characters sent one byte per write come back as sent
  invalid-utf8   invalid UTF-8 and every control byte come back verbatim
  large-message  64 KiB in one write (more than a recv(1024) buffer) comes back whole
  partial-send   --bytes while this side reads nothing for a second: nothing lost
  clients        --clients connections are all served at once (fewer FAILs)
  silent-client  a client is served while another is connected and silent
  half-close     after the client's FIN everything comes back, then the server closes
  reset          after a client's reset mid-stream, a new client is served
  churn          100 cycles of connect, echo a line, close
  throughput     MiB/s on one connection (reported, not judged)
  latency        p50 and p99 of 64-byte round trips (reported, not judged)

Exit status: 0 when no check failed, 1 otherwise, 2 for a mistake on the command line.

--json prints one object on stdout (the lines go to stderr):
  {\"version\": 1, \"mode\": \"server\"|\"client\", \"peer\": \"IP:PORT\"|null,
   \"settings\": {\"bytes\", \"timeout_s\", \"clients\" | \"greeting\", \"wait_s\"},
   \"checks\": [{\"name\", \"status\": \"PASS\"|\"FAIL\"|\"SKIP\", \"message\", \"seconds\",
                \"figures\": {NAME_UNIT: number}}],
   \"summary\": {\"passed\", \"failed\", \"skipped\"}}
Figure names end in their unit (bytes, _s, _ms, _us, mib_per_s, _per_s) unless they are
counts; the library's docs (echo_std::check) list each check's.";

/// `echo-std check`'s options.
#[derive(Args, Debug)]
#[command(args_override_self = true, after_long_help = AFTER_HELP)]
pub struct CheckArgs {
    /// The echo server to check: HOST or HOST:PORT.
    #[arg(value_name = "HOST[:PORT]", required_unless_present = "client")]
    target: Option<String>,
    /// Check an echo client instead: listen, wait for it, check its greeting and its echo.
    #[arg(long, conflicts_with_all = ["target", "clients"])]
    client: bool,
    /// The server's port when HOST[:PORT] has none (5001); with --client, the port to listen
    /// on (6000; 0: any free port).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// With --client: the local address to listen on.
    #[arg(
        long,
        value_name = "IP",
        default_value = "0.0.0.0",
        conflicts_with = "target"
    )]
    bind: IpAddr,
    /// With --client: what the client must send first.
    #[arg(long, value_name = "TEXT", default_value = echo::DEFAULT_GREETING,
          conflicts_with = "target")]
    greeting: String,
    /// With --client: how long to wait for the client to connect.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds,
          conflicts_with = "target")]
    wait: Duration,
    /// Connections the clients check opens at once; fewer served at once fails it.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CLIENTS, value_parser = at_least_one)]
    clients: usize,
    /// Bytes of the big transfers, e.g. 1M, 256K, 100000 (half-close sends a quarter).
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = byte_count)]
    bytes: usize,
    /// The longest wait for the peer's next move; a whole check ends after 6 times this.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    timeout: Duration,
    /// Print the report as JSON on stdout; the lines as the checks end go to stderr.
    #[arg(long)]
    json: bool,
}

fn seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("not a number of seconds: {text}"))?;
    match Duration::try_from_secs_f64(seconds) {
        Ok(time) if time >= Duration::from_millis(1) => Ok(time),
        _ => Err(format!("not a duration of at least 1 ms: {text}")),
    }
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(0) | Err(_) => Err(format!("expected a whole number of at least 1, not {text}")),
        Ok(n) => Ok(n),
    }
}

/// `1048576`, `1M`, `1MiB`, `256K`, `256k`, `64KiB`: at least 1 KiB.
fn byte_count(text: &str) -> Result<usize, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let scale: usize = match &text[digits.len()..] {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other} in {text}: use K or M")),
    };
    let count = digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("not a number of bytes: {text}"))?;
    if count < 1024 {
        return Err(format!("at least 1K, not {text}"));
    }
    Ok(count)
}

/// Runs `echo-std check`: `Err` with a one-line reason when it could not start or a check
/// failed.
pub fn run(args: CheckArgs) -> Result<(), String> {
    let settings = Settings {
        bytes: args.bytes,
        timeout: args.timeout,
        clients: args.clients,
        greeting: args.greeting.into_bytes(),
        wait: args.wait,
    };
    let mut live = Live::new(args.json);
    let report = if args.client {
        let port = args.port.unwrap_or(DEFAULT_CLIENT_PORT);
        let address = SocketAddr::new(args.bind, port);
        let listener =
            TcpListener::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        // Scripts wait for this line to know the port; stdout may be the JSON.
        eprintln!("listening on {local}");
        live.say(&format!(
            "checking the echo client that connects to {local} within {:.0} s",
            settings.wait.as_secs_f64()
        ));
        check_client(&listener, &settings, &mut live)
    } else {
        let target = args.target.unwrap_or_default();
        let addresses = resolve(&target, args.port.unwrap_or(echo::DEFAULT_PORT))?;
        let resolved = addresses[0].to_string();
        let named = match resolved == target {
            true => target,
            false => format!("{target} ({resolved})"),
        };
        live.say(&format!(
            "checking the echo server at {named}: {} bytes per transfer, {:.1} s timeout, {} \
             clients",
            settings.bytes,
            settings.timeout.as_secs_f64(),
            settings.clients
        ));
        check_server(&addresses, &settings, &mut live)
    };
    if args.json {
        println!("{:#}", report.to_json());
    } else {
        println!();
        print!("{}", report.table());
    }
    match report.count(Status::Fail) {
        0 => Ok(()),
        failed => Err(format!("{failed} of {} checks failed", report.checks.len())),
    }
}

/// Prints each check's line as it ends (on stdout, or stderr when stdout is the JSON), with
/// a progress bar on a terminal while a check takes more than a second.
struct Live {
    to_stderr: bool,
    terminal: bool,
    bar: Option<Bar>,
}

/// The running check's progress bar, hidden until [`SHOW_PROGRESS_AFTER`].
struct Bar {
    bar: ProgressBar,
    done: mpsc::Sender<()>,
    reveal: thread::JoinHandle<()>,
}

impl Live {
    fn new(json: bool) -> Self {
        Self {
            to_stderr: json,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    fn say(&self, line: &str) {
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Observer for Live {
    fn started(&mut self, name: &'static str) {
        if !self.terminal {
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(style("{spinner} {msg:14} {elapsed}"));
        bar.set_message(name);
        let (done, finished) = mpsc::channel();
        let shown = bar.clone();
        let reveal = thread::spawn(move || {
            if finished.recv_timeout(SHOW_PROGRESS_AFTER) == Err(mpsc::RecvTimeoutError::Timeout) {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(100));
            }
        });
        self.bar = Some(Bar { bar, done, reveal });
    }

    fn progress(&mut self, done: u64, total: u64) {
        if let Some(Bar { bar, .. }) = &self.bar {
            if bar.length() != Some(total) {
                bar.set_length(total);
                bar.set_style(style(
                    "{spinner} {msg:14} [{bar:32}] {percent:>3}% {elapsed}",
                ));
            }
            bar.set_position(done);
        }
    }

    fn finished(&mut self, outcome: &Outcome) {
        if let Some(Bar { bar, done, reveal }) = self.bar.take() {
            let _ = done.send(());
            let _ = reveal.join();
            bar.finish_and_clear();
        }
        self.say(&outcome.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: CheckArgs,
    }

    fn parse(args: &[&str]) -> Result<CheckArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("check").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn defaults_suit_a_board_on_wifi() {
        let args = parse(&["192.168.4.1"]).unwrap();
        assert_eq!(args.target.as_deref(), Some("192.168.4.1"));
        assert_eq!(
            (args.bytes, args.timeout, args.clients, args.json),
            (1 << 20, Duration::from_secs(10), 3, false)
        );
        assert!(!args.client);
    }

    #[test]
    fn client_mode_takes_no_host_and_has_its_own_options() {
        let args = parse(&[
            "--client",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--greeting",
            "hi",
            "--wait",
            "2.5",
        ])
        .unwrap();
        assert!(args.client);
        assert_eq!(args.port, Some(0));
        assert_eq!(args.greeting, "hi");
        assert_eq!(args.wait, Duration::from_millis(2500));
        assert!(parse(&["--client", "192.168.4.1"]).is_err());
        assert!(parse(&["--client", "--clients", "4"]).is_err());
        assert!(parse(&["192.168.4.1", "--greeting", "hi"]).is_err());
        assert!(parse(&[]).is_err(), "a server check needs HOST");
    }

    #[test]
    fn sizes_take_k_and_m_and_times_must_be_positive() {
        assert_eq!(byte_count("1M"), Ok(1 << 20));
        assert_eq!(byte_count("256K"), Ok(256 << 10));
        assert_eq!(byte_count("64KiB"), Ok(64 << 10));
        assert_eq!(byte_count("100000"), Ok(100_000));
        assert!(byte_count("12").is_err());
        assert!(byte_count("1T").is_err());
        assert!(byte_count("lots").is_err());
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds("0").is_err());
        assert!(seconds("-1").is_err());
        assert!(at_least_one("0").is_err());
    }
}
