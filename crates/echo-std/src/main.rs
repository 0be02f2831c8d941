//! `echo-std`: the tutorial's TCP echo server and client on a PC, with the board's OLED in the
//! terminal or in a PNG file. `echo-std --help` tells how to use it.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use echo::asynch::AsyncEchoClient;
use echo::{
    Backoff, ClientConfig, CloseReason, EchoClient, EchoServer, Event, Reconnect, Screen,
    ServerConfig, Slot, DEFAULT_BUFFER_SIZE, DEFAULT_GREETING, DEFAULT_MAX_CLIENTS, DEFAULT_PORT,
};
use echo_std::stack::{DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT};
use echo_std::{
    AsyncStack, Board, Display, DisplayMode, LoopsConfig, RunError, ServerLoops, StdStack, Stopper,
    ASYNC_MAX_CLIENTS,
};
use log::{debug, error, info, trace, warn};

/// The tutorial's TCP echo server and client, on this computer.
#[derive(Parser, Debug)]
#[command(name = "echo-std", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Echo back every byte clients send (the tutorial's server).
    Server(ServerArgs),
    /// Connect, send a greeting, echo back whatever the server sends (the tutorial's client).
    Client(ClientArgs),
    /// Test an echo server at HOST[:PORT], or an echo client with --client.
    ///
    /// A line per check as it ends (PASS, FAIL or SKIP), then a table; exit status 0 only if
    /// no check failed.
    Check(echo_std::check::CheckArgs),
}

// A later option overrides an earlier one, so that scripts can append to a base command.
#[derive(Args, Debug)]
#[command(args_override_self = true)]
struct ServerArgs {
    /// What runs the echo (the async server serves at most 64 clients at once).
    #[arg(long, value_enum, default_value_t = Engine::Nb)]
    engine: Engine,
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
    /// Poll loops, one a thread, sharing the port and --max-clients (each client goes to the
    /// loop serving the fewest); one display for all.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    threads: usize,
    /// Where the OLED is shown: auto (the terminal if stderr is one), terminal, none, png:PATH.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    display: DisplayMode,
}

#[derive(Args, Debug)]
#[command(args_override_self = true)]
struct ClientArgs {
    /// What runs the echo.
    #[arg(long, value_enum, default_value_t = Engine::Nb)]
    engine: Engine,
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

/// The two ways the host board runs the echo core: same behaviour, same output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// The non-blocking roles polled in one loop on the poller-backed stack.
    Nb,
    /// The async roles (echo::asynch) on async-io's executor.
    Async,
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
    if let Command::Server(args) = &cli.command {
        if args.engine == Engine::Async && args.threads > 1 {
            server_conflict(
                "--threads: the async engine runs one loop (--engine nb runs several)".into(),
            );
        }
        if args.engine == Engine::Async && args.max_clients > ASYNC_MAX_CLIENTS {
            server_conflict(format!(
                "--max-clients {}: the async engine serves at most {ASYNC_MAX_CLIENTS} clients \
                 at once (--engine nb has no such limit)",
                args.max_clients
            ));
        }
    }
    let display = match &cli.command {
        Command::Server(args) => args.display.open(),
        Command::Client(args) => args.display.open(),
        Command::Check(_) => Display::None,
    };
    start_logging(&display);
    let outcome = match cli.command {
        Command::Server(args) => serve(args, display),
        Command::Client(args) => connect(args, display),
        Command::Check(args) => echo_std::check::run(args),
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

/// Exits as clap does for arguments of `server` that do not go together (status 2, the
/// usage line).
fn server_conflict(message: String) -> ! {
    let mut command = Cli::command();
    command.build();
    command
        .find_subcommand_mut("server")
        .expect("the server subcommand")
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
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

/// Stops the board's loop on SIGINT or SIGTERM: it closes every connection and returns.
///
/// The non-blocking loop's stop is handled in the signal itself, not on a thread of its own
/// as the `ctrlc` crate's is: a process of one thread takes the kernel's and the C library's
/// single-threaded paths on every system call (no file reference counting in `fdget`, no
/// cancellation bookkeeping around `recv` and `send`), about 6% of the one loop's CPU at
/// loopback speed. The async run's stop takes a lock (see [`Stopper::stop`]): a thread
/// waits for the signals and stops it.
fn stop_on_signals(stopper: Stopper) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    if !stopper.is_signal_safe() {
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(mut signals) => {
                std::thread::spawn(move || {
                    for _ in signals.forever() {
                        stopper.stop();
                    }
                });
            }
            Err(e) => warn!("cannot handle SIGINT/SIGTERM: {e}"),
        }
        return;
    }
    for signal in [SIGINT, SIGTERM] {
        let stopper = stopper.clone();
        // SAFETY: `Stopper::stop` of the non-blocking loop stores an atomic and writes an
        // eventfd (mio's `Waker`): async-signal-safe, no allocation, no lock.
        #[allow(unsafe_code)]
        let registered =
            unsafe { signal_hook::low_level::register(signal, move || stopper.stop()) };
        if let Err(e) = registered {
            warn!("cannot handle signal {signal}: {e}");
        }
    }
}

fn serve(args: ServerArgs, display: Display) -> Result<(), String> {
    if args.threads > args.max_clients {
        return Err(format!(
            "--threads {} is more than --max-clients {}: every loop needs a client slot",
            args.threads, args.max_clients
        ));
    }
    if args.engine == Engine::Async {
        return serve_async(args, display);
    }
    let stack = || {
        StdStack::new().map(|stack| {
            stack
                .with_bind_address(args.bind)
                .with_backlog(args.backlog)
        })
    };
    let buffer_size = args
        .max_clients
        .checked_mul(args.buffer)
        .ok_or("--max-clients times --buffer is too large")?;
    let config = ServerConfig::new()
        .with_port(args.port)
        .with_idle_timeout(args.idle_timeout);
    let report_received = !matches!(display, Display::None) || log::log_enabled!(log::Level::Trace);
    let mut board = Board::new(stack().map_err(|e| e.to_string())?, display);
    stop_on_signals(board.stopper());
    let mut events = ServerEvents::default();
    let mut on_event = |event: &Event<'_, echo_std::Error>| events.on_event(event);
    if args.threads == 1 {
        let mut slots: Vec<Slot<_>> = (0..args.max_clients).map(|_| Slot::new()).collect();
        let mut buffer = vec![0u8; buffer_size];
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        board.run(&mut server, &mut Screen::server(), &mut on_event)
    } else {
        let loops = LoopsConfig {
            threads: args.threads,
            max_clients: args.max_clients,
            buffer: args.buffer,
            server: config,
            report_received,
        };
        let notifier = board.stack().notifier();
        let mut loops = ServerLoops::spawn(loops, stack, notifier).map_err(|e| e.to_string())?;
        let outcome = board.run(&mut loops, &mut Screen::server(), &mut on_event);
        loops.take_failure().map_or(outcome, Err)
    }
    .map_err(|e| e.to_string())?;
    events.outcome()
}

/// `serve` on the async engine: the same options, output and exit status.
fn serve_async(args: ServerArgs, display: Display) -> Result<(), String> {
    let stack = AsyncStack::new()
        .with_bind_address(args.bind)
        .with_backlog(args.backlog);
    let mut board = Board::new(stack, display);
    stop_on_signals(board.stopper());
    let config = ServerConfig::new()
        .with_port(args.port)
        .with_idle_timeout(args.idle_timeout);
    let mut events = ServerEvents::default();
    board
        .serve(
            config,
            args.max_clients,
            args.buffer,
            &mut Screen::server(),
            |event| events.on_event(event),
        )
        .map_err(|e| e.to_string())?;
    events.outcome()
}

/// What the server's events mean to the program, whatever the engine.
#[derive(Default)]
struct ServerEvents {
    listening: bool,
    cannot_listen: Option<String>,
}

impl ServerEvents {
    /// Logs `event`, prints the first listening address; breaks when listening never worked.
    fn on_event(&mut self, event: &Event<'_, echo_std::Error>) -> ControlFlow<()> {
        log_event(event, "from");
        match event {
            // Several loops (--threads) each say it: the first is the line.
            Event::Listening { local } if !self.listening => {
                self.listening = true;
                // Scripts wait for this line to know the port.
                println!("listening on {local}");
                let _ = std::io::stdout().flush();
            }
            // Listening never worked: the address or port is wrong, not busy for a moment.
            Event::ListenFailed { error, .. } if !self.listening => {
                self.cannot_listen = Some(describe(error));
                return ControlFlow::Break(());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// How the program ends once the run returned.
    fn outcome(self) -> Result<(), String> {
        self.cannot_listen.map_or(Ok(()), Err)
    }
}

fn connect(args: ClientArgs, display: Display) -> Result<(), String> {
    let remote = resolve(&args.host, args.port)?;
    let connect_timeout = args.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let reconnect = Reconnect::new()
        .with_max_retries(Some(args.retries))
        .with_backoff(Backoff::new(
            Duration::from_millis(250),
            Duration::from_secs(4),
        ))
        .with_after_disconnect(false);
    let config = ClientConfig::new(remote)
        .with_greeting(args.greeting.as_bytes())
        .with_connect_timeout(args.connect_timeout)
        .with_reconnect((args.retries > 0).then_some(reconnect));
    let mut buffer = vec![0u8; args.buffer];
    let mut ended = Ok(());
    let on_event = |event: &Event<'_, echo_std::Error>| {
        log_event(event, "to");
        if let Event::Closed { reason, .. } = event {
            ended = match reason {
                CloseReason::PipeClosed => Err(format!("the connection to {remote} was reset")),
                CloseReason::Failed(e) => Err(e.to_string()),
                _ => Ok(()),
            };
        }
        ControlFlow::Continue(())
    };
    let outcome = match args.engine {
        Engine::Nb => {
            let stack = StdStack::new()
                .map_err(|e| e.to_string())?
                .with_connect_timeout(connect_timeout);
            let mut board = Board::new(stack, display);
            stop_on_signals(board.stopper());
            let mut client = EchoClient::new(config, &mut buffer);
            board.run(&mut client, &mut Screen::client(), on_event)
        }
        Engine::Async => {
            let mut board = Board::new(
                AsyncStack::new().with_connect_timeout(connect_timeout),
                display,
            );
            stop_on_signals(board.stopper());
            let mut client = AsyncEchoClient::new(config, &mut buffer);
            board.run(&mut client, &mut Screen::client(), on_event)
        }
    };
    match outcome {
        Ok(()) => ended,
        Err(RunError::Role(e)) => Err(describe(&e)),
        Err(e) => Err(e.to_string()),
    }
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

/// Logs what happened; `peer_word` says how a peer relates to us ("connected from" a client,
/// "connected to" a server).
fn log_event(event: &Event<'_, echo_std::Error>, peer_word: &str) {
    match event {
        Event::Listening { local } => info!("listening on {local}"),
        Event::ListenFailed { error, retry_in } => error!(
            "{}; listening again in {:.1} s",
            describe(error),
            retry_in.as_secs_f64()
        ),
        Event::Opened { conn, peer, .. } => info!("{conn} connected {peer_word} {peer}"),
        Event::Received { conn, bytes } => trace!("{conn} received {} bytes", bytes.len()),
        Event::Closed { conn, reason, .. } => match reason {
            CloseReason::Failed(e) => warn!("{conn} closed: {e}"),
            reason => info!("{conn} closed: {}", reason.as_str()),
        },
        Event::Connecting { remote, attempt } => {
            info!("connecting to {remote} (attempt {attempt})")
        }
        Event::ConnectFailed {
            error,
            retry_in: Some(retry_in),
        } => warn!(
            "{}; trying again in {:.1} s",
            describe(error),
            retry_in.as_secs_f64()
        ),
        // The last failure is the program's one-line error.
        Event::ConnectFailed { retry_in: None, .. } => {}
        other => debug!("{other:?}"),
    }
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
            "--threads",
            "2",
            "--display",
            "png:/tmp/x.png",
        ])
        .unwrap();
        let Command::Server(args) = cli.command else {
            panic!("not the server")
        };
        assert_eq!(args.port, 0);
        assert_eq!(args.backlog, 5);
        assert_eq!(args.idle_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(args.display, DisplayMode::Png("/tmp/x.png".into()));
        assert_eq!(args.threads, 2);
        assert_eq!(args.engine, Engine::Nb, "the default engine");
        let cli = Cli::try_parse_from(["echo-std", "client", "--host", "localhost"]).unwrap();
        let Command::Client(args) = cli.command else {
            panic!("not the client")
        };
        assert_eq!((args.port, args.retries, args.buffer), (5001, 0, 1024));
        assert_eq!(args.greeting, DEFAULT_GREETING);
        let cli = Cli::try_parse_from(["echo-std", "client", "--host", "h", "--engine", "async"])
            .unwrap();
        let Command::Client(args) = cli.command else {
            panic!("not the client")
        };
        assert_eq!(args.engine, Engine::Async);
        assert!(Cli::try_parse_from(["echo-std", "server", "--engine", "tokio"]).is_err());
        assert!(
            Cli::try_parse_from(["echo-std", "client"]).is_err(),
            "--host is required"
        );
    }
}
