//! `echo-std`: the tutorial's TCP echo server and client on a PC, with the board's OLED in the
//! terminal or in a PNG file. `echo-std --help` tells how to use it.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use echo::{
    ClientConfig, CloseReason, EchoClient, EchoServer, Event, Reconnect, Screen, ServerConfig,
    Slot, Stats, ZeroRead, DEFAULT_BUFFER_SIZE, DEFAULT_GREETING, DEFAULT_MAX_CLIENTS,
    DEFAULT_PORT,
};
use echo_std::stack::{DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT};
use echo_std::{Board, Display, DisplayMode, Notifier, StdStack};
use log::{debug, error, info, trace, warn};

/// The tutorial's TCP echo server and client, on this computer.
#[derive(Parser, Debug)]
#[command(name = "echo-std", version)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Echo back every byte clients send (the tutorial's server).
    Server(ServerArgs),
    /// Connect, send a greeting, echo back whatever the server sends (the tutorial's client).
    Client(ClientArgs),
}

// A later option overrides an earlier one, so that scripts can append to a base command.
#[derive(Args, Debug)]
#[command(args_override_self = true)]
struct ServerArgs {
    /// Local address to listen on.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port to listen on (0: any free port; the first line printed says which).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Connections the system queues while all client slots are busy.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG)]
    backlog: u32,
    /// Clients served at once; the next ones wait in the backlog.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLIENTS,
          value_parser = at_least_one)]
    max_clients: usize,
    /// Close a connection when nothing moved for this long.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    idle_timeout: Option<Duration>,
    /// Echo buffer per client, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BUFFER_SIZE,
          value_parser = at_least_one)]
    buffer: usize,
    /// Where the OLED is shown: auto (the terminal if stderr is one), terminal, none, png:PATH.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    display: DisplayMode,
}

#[derive(Args, Debug)]
#[command(args_override_self = true)]
struct ClientArgs {
    /// The server's name or address.
    #[arg(long)]
    host: String,
    /// The server's port.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Sent once connected, before echoing.
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_GREETING)]
    greeting: String,
    /// Further connection attempts after a failed one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    /// Give a connection attempt up after this long.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    connect_timeout: Option<Duration>,
    /// Echo buffer, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BUFFER_SIZE,
          value_parser = at_least_one)]
    buffer: usize,
    /// Where the OLED is shown: auto (the terminal if stderr is one), terminal, none, png:PATH.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    display: DisplayMode,
}

fn seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("not a number of seconds: {text}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("not a duration: {text}"))
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(0) | Err(_) => Err(format!("expected a whole number of at least 1, not {text}")),
        Ok(n) => Ok(n),
    }
}

type EchoError = echo::Error<echo_std::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let display = match &cli.role {
        Role::Server(args) => args.display.open(),
        Role::Client(args) => args.display.open(),
    };
    start_logging(&display);
    let outcome = match cli.role {
        Role::Server(args) => serve(args, display),
        Role::Client(args) => connect(args, display),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // After the logs, the one line that says why.
            eprintln!("echo-std: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs on stderr, `info` unless `RUST_LOG` says otherwise; above the picture in terminal
/// mode.
fn start_logging(display: &Display) {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(log) = display.log() {
        logger.target(env_logger::Target::Pipe(Box::new(log)));
    }
    logger.init();
}

/// Sets `stop` and wakes the loop on SIGINT or SIGTERM.
fn stop_on_signals(notifier: Notifier) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let installed = ctrlc::set_handler(move || {
        flag.store(true, Ordering::SeqCst);
        let _ = notifier.notify();
    });
    if let Err(e) = installed {
        warn!("cannot handle SIGINT/SIGTERM: {e}");
    }
    stop
}

fn serve(args: ServerArgs, display: Display) -> Result<(), String> {
    let stack = StdStack::new()
        .map_err(|e| e.to_string())?
        .with_bind_address(args.bind)
        .with_backlog(args.backlog);
    let mut board = Board::new(stack, display);
    let stop = stop_on_signals(board.stack().notifier());
    let buffer_size = args
        .max_clients
        .checked_mul(args.buffer)
        .ok_or("--max-clients times --buffer is too large")?;
    let mut slots: Vec<Slot<_>> = (0..args.max_clients).map(|_| Slot::new()).collect();
    let mut buffer = vec![0u8; buffer_size];
    let config = ServerConfig {
        port: args.port,
        idle_timeout: args.idle_timeout,
        zero_read: ZeroRead::Eof,
    };
    let mut server = EchoServer::new(config, &mut slots, &mut buffer);
    let mut screen = Screen::server();
    screen.set_local_ip(args.bind);
    let mut listening_on: Option<SocketAddr> = None;
    let shows_screen = board.has_display();

    while !stop.load(Ordering::SeqCst) {
        let now = board.now();
        let mut listened = false;
        let polled = server.poll(board.stack(), now, |event| {
            log_event(&event);
            match event {
                // Shown below with the port the system chose, not the one asked for.
                Event::Listening { .. } => listened = true,
                // A screen nobody sees is not kept: even bounded, its update costs about 0.5 us
                // per received KiB, a fifth of the echo itself at loopback speed.
                event if shows_screen => screen.update(&event),
                _ => {}
            }
        });
        let (progress, pause) = match polled {
            Ok(progress) => (progress, None),
            Err(e) if listening_on.is_none() => return Err(describe(&e)),
            Err(e) => {
                error!("{}; listening again in 1 s", describe(&e));
                (false, Some(Duration::from_secs(1)))
            }
        };
        if listened {
            let local = server
                .listener()
                .map(|listener| board.stack().local_addr(listener))
                .ok_or("listening, but without a listening socket")?
                .map_err(|e| e.to_string())?;
            let listening: Event<'_, ()> = Event::Listening { port: local.port() };
            screen.update(&listening);
            if listening_on.is_none() {
                // Scripts wait for this line to know the port.
                println!("listening on {local}");
                std::io::stdout().flush().map_err(|e| e.to_string())?;
            }
            info!("listening on {local}");
            listening_on = Some(local);
        }
        let summary = || summary(server.active(), server.max_clients(), server.stats());
        board
            .show(&mut screen, summary)
            .map_err(|e| e.to_string())?;
        if !progress {
            match pause {
                Some(pause) => board.wait(Some(pause)),
                // Sleeps until the network wakes it or the earliest idle timeout is due.
                None => board.wait_until(server.next_deadline()),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    info!("stopping");
    server.shutdown(board.stack(), |event| {
        log_event(&event);
        screen.update(&event);
    });
    let summary = || summary(server.active(), server.max_clients(), server.stats());
    board
        .finish(&mut screen, summary)
        .map_err(|e| e.to_string())
}

fn connect(args: ClientArgs, display: Display) -> Result<(), String> {
    let remote = resolve(&args.host, args.port)?;
    let stack = StdStack::new()
        .map_err(|e| e.to_string())?
        .with_connect_timeout(args.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT));
    let mut board = Board::new(stack, display);
    let stop = stop_on_signals(board.stack().notifier());
    let config = ClientConfig {
        remote,
        greeting: args.greeting.as_bytes(),
        connect_timeout: args.connect_timeout,
        idle_timeout: None,
        reconnect: (args.retries > 0).then_some(Reconnect {
            max_retries: Some(args.retries),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            after_disconnect: false,
        }),
        zero_read: ZeroRead::Eof,
    };
    let mut buffer = vec![0u8; args.buffer];
    let mut client = EchoClient::new(config, &mut buffer);
    let mut screen = Screen::client();
    let mut ended: Result<(), String> = Ok(());

    while !stop.load(Ordering::SeqCst) && !client.is_finished() {
        let now = board.now();
        let polled = client.poll(board.stack(), now, |event| {
            log_event(&event);
            if let Event::Disconnected { reason, .. } = &event {
                ended = match reason {
                    CloseReason::PipeClosed => Err(format!("the connection to {remote} was reset")),
                    CloseReason::Failed(e) => Err(e.to_string()),
                    _ => Ok(()),
                };
            }
            screen.update(&event);
        });
        let summary = || summary(usize::from(client.is_connected()), 1, client.stats());
        let progress = match polled {
            Ok(progress) => progress,
            Err(e) => {
                let _ = board.finish(&mut screen, summary);
                return Err(describe(&e));
            }
        };
        board
            .show(&mut screen, summary)
            .map_err(|e| e.to_string())?;
        if !progress && !client.is_finished() {
            board
                .wait_until(client.next_deadline())
                .map_err(|e| e.to_string())?;
        }
    }
    client.shutdown(board.stack(), |event| {
        log_event(&event);
        screen.update(&event);
    });
    let summary = || summary(0, 1, client.stats());
    board
        .finish(&mut screen, summary)
        .map_err(|e| e.to_string())?;
    ended
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let mut addresses = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    addresses
        .next()
        .ok_or_else(|| format!("cannot resolve {host}: no address"))
}

/// The one-line reason a role stopped, in words (the stack's errors already name the address
/// and the operation).
fn describe(error: &EchoError) -> String {
    match error {
        EchoError::Socket(e) => format!("cannot create a socket: {}", e.io_error()),
        EchoError::Bind { error, .. } | EchoError::Listen { error, .. } => {
            format!("cannot {error}")
        }
        EchoError::Accept(e) => format!("cannot accept: {}", e.io_error()),
        EchoError::Connect { remote, error } => {
            format!("cannot connect to {remote}: {}", error.io_error())
        }
        EchoError::ConnectTimeout { remote, after } => format!(
            "cannot connect to {remote}: timed out after {:.1} s",
            after.as_secs_f64()
        ),
        other => other.to_string(),
    }
}

fn log_event(event: &Event<'_, echo_std::Error>) {
    match event {
        Event::Listening { .. } => {}
        Event::Accepted { conn, peer } => info!("{conn} connected from {peer}"),
        Event::Received { conn, bytes } => trace!("{conn} received {} bytes", bytes.len()),
        Event::Closed { conn, reason } | Event::Disconnected { conn, reason } => match reason {
            CloseReason::Failed(e) => warn!("{conn} closed: {e}"),
            reason => info!("{conn} closed: {}", reason.as_str()),
        },
        Event::Connecting { remote, attempt } => {
            info!("connecting to {remote} (attempt {attempt})")
        }
        Event::Connected { conn, remote } => info!("{conn} connected to {remote}"),
        Event::ConnectFailed { error, retry_in } => warn!(
            "{}; trying again in {:.1} s",
            describe(error),
            retry_in.as_secs_f64()
        ),
        other => debug!("{other:?}"),
    }
}

/// The live summary under the picture: clients, bytes in and out.
fn summary(active: usize, max: usize, stats: Stats) -> String {
    format!(
        "clients {active}/{max}  in {}  out {}",
        bytes(stats.bytes_received),
        bytes(stats.bytes_sent)
    )
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_may_be_fractional_but_not_negative() {
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("3"), Ok(Duration::from_secs(3)));
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
    }

    #[test]
    fn counts_need_at_least_one() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err());
    }

    #[test]
    fn summary_counts_clients_and_bytes() {
        let stats = Stats {
            connections: 4,
            bytes_received: 1536,
            bytes_sent: 3 << 20,
        };
        assert_eq!(summary(2, 3, stats), "clients 2/3  in 1.5 KiB  out 3.0 MiB");
        assert_eq!(bytes(1023), "1023 B");
    }

    #[test]
    fn the_interface_scripts_rely_on_parses() {
        let cli = Cli::try_parse_from([
            "echo-std",
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--backlog",
            "5",
            "--max-clients",
            "2",
            "--idle-timeout",
            "1.5",
            "--buffer",
            "4096",
            "--display",
            "png:/tmp/x.png",
        ])
        .unwrap();
        let Role::Server(args) = cli.role else {
            panic!("not the server")
        };
        assert_eq!(args.port, 0);
        assert_eq!(args.backlog, 5);
        assert_eq!(args.idle_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(args.display, DisplayMode::Png("/tmp/x.png".into()));
        let cli = Cli::try_parse_from(["echo-std", "client", "--host", "localhost"]).unwrap();
        let Role::Client(args) = cli.role else {
            panic!("not the client")
        };
        assert_eq!((args.port, args.retries, args.buffer), (5001, 0, 1024));
        assert_eq!(args.greeting, DEFAULT_GREETING);
        assert!(
            Cli::try_parse_from(["echo-std", "client"]).is_err(),
            "--host is required"
        );
    }
}
