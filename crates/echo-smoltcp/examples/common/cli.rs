//! The command line and the output of the `tap` and `tap_async` examples, which take exactly
//! the same arguments and print the same lines (the TAP tests run both).

use std::fmt;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use echo::{CloseReason, Event, Layout, Screen, ROWS};
use embassy_net_tuntap::TunTapDevice;

/// The command line of example `name` and its TAP device, opened; or the exit code to leave
/// with: 0 after `--help`, 2 for a mistake on the command line, 1 when the device cannot be
/// opened.
pub fn start(name: &str) -> Result<(Args, TunTapDevice), ExitCode> {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            println!("{}", usage(name));
            return Err(ExitCode::SUCCESS);
        }
        Err(message) => {
            eprintln!("{message}\n{}", usage(name));
            return Err(ExitCode::from(2));
        }
    };
    match TunTapDevice::new(&args.iface) {
        Ok(tap) => Ok((args, tap)),
        Err(e) => {
            eprintln!(
                "cannot open TAP device {}: {e} (root needed; see scripts/tap-netns.sh)",
                args.iface
            );
            Err(ExitCode::FAILURE)
        }
    }
}

/// The exit code of example `name`'s run: 0, or 1 after saying why.
pub fn exit(name: &str, ran: Result<(), String>) -> ExitCode {
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{name}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The client's run is a success only when the server ended the connection (its FIN).
pub struct ClientEnd {
    by_server: bool,
}

impl ClientEnd {
    pub fn new() -> Self {
        ClientEnd { by_server: false }
    }

    /// Follows the client's events.
    pub fn update<E>(&mut self, event: &Event<'_, E>) {
        if let Event::Closed { reason, .. } = event {
            self.by_server = matches!(reason, CloseReason::Eof);
        }
    }

    /// What the run comes to.
    pub fn outcome(&self, ran: Result<(), String>) -> Result<(), String> {
        ran.and_then(|()| match self.by_server {
            true => Ok(()),
            false => Err("the connection did not end with the server's FIN".into()),
        })
    }
}

/// The usage text, for example `name` (`tap`, `tap_async`).
pub fn usage(name: &str) -> String {
    let pad = " ".repeat(name.len());
    format!(
        "usage:
  {name} server --iface IFACE --ip ADDR/PREFIX [--port PORT] [--gateway ADDR]
  {pad}        [--idle-timeout SECS] [--loss PERCENT] [--corrupt PERCENT]
  {name} client --iface IFACE --ip ADDR/PREFIX --host ADDR [--port PORT] [--gateway ADDR]
  {pad}        [--loss PERCENT] [--corrupt PERCENT]
  {name} --help"
    )
}

#[derive(Debug, PartialEq)]
pub enum Mode {
    Server {
        idle_timeout: Option<echo::Duration>,
    },
    Client {
        host: Ipv4Addr,
    },
}

#[derive(Debug)]
pub struct Args {
    pub mode: Mode,
    pub iface: String,
    /// The interface's address and prefix length.
    pub ip: (Ipv4Addr, u8),
    pub port: u16,
    pub gateway: Option<Ipv4Addr>,
    /// Frames dropped and corrupted, in percent of each direction's.
    pub loss: u8,
    pub corrupt: u8,
}

/// What the command line asks for: a run, or the usage.
#[derive(Debug)]
pub enum Command {
    Run(Args),
    Help,
}

pub fn parse(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let args: Vec<String> = args.collect();
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        return Ok(Command::Help);
    }
    let mut args = args.into_iter();
    let mode = args.next().ok_or("missing mode: server or client")?;
    let (mut iface, mut ip, mut port, mut host, mut gateway) = (None, None, None, None, None);
    let mut idle_timeout = None;
    let (mut loss, mut corrupt) = (0, 0);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--iface" => iface = Some(value),
            "--ip" => {
                let (addr, prefix) = value
                    .split_once('/')
                    .ok_or(format!("--ip {value}: expected ADDR/PREFIX"))?;
                let addr: Ipv4Addr = addr.parse().map_err(|e| format!("--ip {value}: {e}"))?;
                let prefix: u8 = prefix.parse().map_err(|e| format!("--ip {value}: {e}"))?;
                if prefix > 32 {
                    return Err(format!("--ip {value}: prefix above 32"));
                }
                ip = Some((addr, prefix));
            }
            "--port" => port = Some(value.parse().map_err(|e| format!("--port {value}: {e}"))?),
            "--host" => host = Some(value.parse().map_err(|e| format!("--host {value}: {e}"))?),
            "--gateway" => {
                gateway = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--gateway {value}: {e}"))?,
                )
            }
            "--loss" => loss = percent(&flag, &value)?,
            "--corrupt" => corrupt = percent(&flag, &value)?,
            "--idle-timeout" => {
                let seconds: f64 = value
                    .parse()
                    .map_err(|e| format!("--idle-timeout {value}: {e}"))?;
                let timeout = echo::Duration::try_from_secs_f64(seconds)
                    .map_err(|e| format!("--idle-timeout {value}: {e}"))?;
                idle_timeout = Some(timeout);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let mode = match mode.as_str() {
        "server" => Mode::Server { idle_timeout },
        "client" if idle_timeout.is_some() => {
            return Err("--idle-timeout is a server option".into())
        }
        "client" => Mode::Client {
            host: host.ok_or("client mode needs --host")?,
        },
        other => return Err(format!("unknown mode {other}: server or client")),
    };
    let default_port = match mode {
        Mode::Server { .. } => echo::DEFAULT_PORT,
        Mode::Client { .. } => 6000,
    };
    Ok(Command::Run(Args {
        mode,
        iface: iface.ok_or("missing --iface")?,
        ip: ip.ok_or("missing --ip")?,
        port: port.unwrap_or(default_port),
        gateway,
        loss,
        corrupt,
    }))
}

/// A share from 0 to 100.
pub fn percent(flag: &str, value: &str) -> Result<u8, String> {
    match value.parse::<u8>() {
        Ok(share) if share <= 100 => Ok(share),
        _ => Err(format!("{flag} {value}: expected a percentage, 0 to 100")),
    }
}

pub fn print<E: fmt::Debug>(event: &Event<'_, E>) {
    match event {
        Event::Listening { local } => println!("listening on {local}"),
        Event::ListenFailed { error, retry_in } => {
            eprintln!("server: {error}; listening again in {retry_in:?}")
        }
        Event::Connecting { remote, attempt } => {
            println!("connecting to {remote} (attempt {attempt})")
        }
        Event::ConnectFailed { error, .. } => eprintln!("client: {error}"),
        Event::Opened { conn, peer, .. } => println!("{conn} opened with {peer}"),
        Event::Received { conn, bytes } => {
            println!("{conn} received {} bytes: {}", bytes.len(), preview(bytes))
        }
        Event::Closed { conn, reason, .. } => println!("{conn} closed: {}", reason.as_str()),
        other => println!("{other:?}"),
    }
}

/// At most the first 64 bytes, for a log line.
pub fn preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(64)];
    let text = String::from_utf8_lossy(shown);
    let text = text.trim_end();
    if bytes.len() > shown.len() {
        format!("{text}...")
    } else {
        text.to_string()
    }
}

/// The tutorial's screen as text: after each event, every row that changed is printed as
/// `screen ROW: TEXT` (the TAP tests read the client's address there).
pub struct TextScreen<L> {
    screen: Screen<L>,
    shown: [String; ROWS],
}

impl<L: Layout> TextScreen<L> {
    /// Prints nothing yet: the first line of the examples is `listening on` (or the
    /// client's), and the screen's rows follow the events.
    pub fn new(screen: Screen<L>) -> Self {
        let shown = core::array::from_fn(|row| screen.line(row).to_string());
        TextScreen { screen, shown }
    }

    pub fn update<E>(&mut self, event: &Event<'_, E>) {
        self.screen.update(event);
        self.print_changes();
    }

    fn print_changes(&mut self) {
        for (row, shown) in self.shown.iter_mut().enumerate() {
            let text = self.screen.line(row).to_string();
            if text != *shown {
                println!("screen {row}: {text}");
                *shown = text;
            }
        }
    }
}
