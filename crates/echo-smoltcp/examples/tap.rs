//! The echo server or client on a Linux TAP interface, through the same path as on an
//! ESP32: TAP driver (embassy-net-tuntap, an embassy-net-driver `Driver` like esp-radio's
//! WiFi) -> `DriverDevice` -> smoltcp -> `echo_smoltcp::Stack` -> the `echo` core. The peer
//! is the Linux kernel's TCP on the other side of the TAP device. Linux only; needs root
//! (or CAP_NET_ADMIN) to open the TAP device.
//!
//! ```text
//! tap server --iface tap0 --ip 192.168.69.2/24 [--port 5001] [--gateway 192.168.69.1]
//!            [--idle-timeout SECS] [--loss PERCENT] [--corrupt PERCENT]
//!     prints `listening on 192.168.69.2:5001` once ready; serves up to 3 clients at once
//! tap client --iface tap0 --ip 192.168.69.2/24 --host 192.168.69.1 [--port 6000]
//!            [--loss PERCENT] [--corrupt PERCENT]
//!     sends the greeting, echoes what the server sends, exits 0 when the server closes
//! tap --help
//! ```
//!
//! `--loss` and `--corrupt` make the link lossy the way WiFi is: smoltcp's `FaultInjector`
//! around the device drops (or corrupts) that share of the frames in each direction.
//!
//! Dead peers (a phone that left the WiFi without closing) do not hold a slot for ever: the
//! stack's keep-alive and timeout ([`TcpOptions`](echo_smoltcp::TcpOptions)) end their
//! connections, and `--idle-timeout` ends connections where nothing moved for that long.
//!
//! Setting up the TAP device, best inside a network namespace (`scripts/tap-netns.sh up`
//! does exactly this):
//!
//! ```text
//! ip netns add echo-test
//! ip netns exec echo-test ip link set lo up
//! ip netns exec echo-test ip tuntap add dev tap0 mode tap
//! ip netns exec echo-test ip addr add 192.168.69.1/24 dev tap0
//! ip netns exec echo-test ip link set tap0 up
//! ip netns exec echo-test cargo run -p echo-smoltcp --example tap -- server --iface tap0 --ip 192.168.69.2/24
//! ip netns exec echo-test ncat 192.168.69.2 5001      # in another terminal
//! ```
//!
//! Without a namespace, the same `ip tuntap/addr/link` commands on the host work too; the
//! kernel's side of the link is 192.168.69.1, this program's is the `--ip` address.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the tap example needs Linux TAP devices");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::thread::{self, Thread};
    use std::time::{Duration as StdDuration, Instant as StdInstant, SystemTime};

    use echo::{
        ClientConfig, CloseReason, EchoClient, EchoServer, Event, Role, ServerConfig, Slot,
    };
    use echo_smoltcp::smoltcp::iface::{Config, SocketStorage};
    use echo_smoltcp::smoltcp::phy::FaultInjector;
    use echo_smoltcp::smoltcp::time::Instant;
    use echo_smoltcp::smoltcp::wire::{Ipv4Address, Ipv4Cidr};
    use echo_smoltcp::{DriverDevice, Stack, TcpOptions};
    use embassy_net_tuntap::TunTapDevice;

    const USAGE: &str = "usage:
      tap server --iface IFACE --ip ADDR/PREFIX [--port PORT] [--gateway ADDR]
                 [--idle-timeout SECS] [--loss PERCENT] [--corrupt PERCENT]
      tap client --iface IFACE --ip ADDR/PREFIX --host ADDR [--port PORT] [--gateway ADDR]
                 [--loss PERCENT] [--corrupt PERCENT]
      tap --help";

    /// Clients served at once, and the listen backlog: three, like the tutorial's `listen(3)`.
    const MAX_CLIENTS: usize = echo::DEFAULT_MAX_CLIENTS;
    /// Pool sockets: every client served plus a full backlog behind them.
    const POOL: usize = 2 * MAX_CLIENTS;
    /// Per-socket receive and transmit buffer.
    const TCP_BUFFER: usize = 16 * 1024;
    /// Longest sleep between polls when the stack has no timer due sooner.
    const MAX_WAIT: StdDuration = StdDuration::from_millis(20);

    type TapStack<'a> = Stack<'a, FaultInjector<DriverDevice<TunTapDevice>>, POOL>;
    type TapEvent<'a> = Event<'a, echo_smoltcp::Error>;

    #[derive(Debug, PartialEq)]
    enum Mode {
        Server {
            idle_timeout: Option<echo::Duration>,
        },
        Client {
            host: Ipv4Addr,
        },
    }

    #[derive(Debug)]
    struct Args {
        mode: Mode,
        iface: String,
        ip: Ipv4Cidr,
        port: u16,
        gateway: Option<Ipv4Address>,
        /// Frames dropped and corrupted, in percent of each direction's.
        loss: u8,
        corrupt: u8,
    }

    /// What the command line asks for: a run, or the usage.
    #[derive(Debug)]
    enum Command {
        Run(Args),
        Help,
    }

    fn parse(args: impl Iterator<Item = String>) -> Result<Command, String> {
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
                    ip = Some(Ipv4Cidr::new(addr, prefix));
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
    fn percent(flag: &str, value: &str) -> Result<u8, String> {
        match value.parse::<u8>() {
            Ok(share) if share <= 100 => Ok(share),
            _ => Err(format!("{flag} {value}: expected a percentage, 0 to 100")),
        }
    }

    /// Wakes the polling thread when the TAP device becomes readable.
    struct Unpark(Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Time since the program started, in both crates' units.
    struct Clock(StdInstant);

    impl Clock {
        fn micros(&self) -> i64 {
            self.0.elapsed().as_micros() as i64
        }

        fn smoltcp(&self) -> Instant {
            Instant::from_micros(self.micros())
        }

        fn echo(&self) -> echo::Instant {
            echo::Instant::from_micros(self.micros() as u64)
        }
    }

    /// Sleeps until a frame arrives, a stack timer or `deadline` is due, or `MAX_WAIT`.
    fn wait(stack: &mut TapStack<'_>, clock: &Clock, deadline: Option<echo::Instant>) {
        let now = clock.echo();
        let role = deadline.map(|deadline| deadline - now);
        let delay = stack
            .poll_delay(clock.smoltcp())
            .map(|d| StdDuration::from_micros(d.total_micros()))
            .into_iter()
            .chain(role)
            .fold(MAX_WAIT, StdDuration::min);
        if !delay.is_zero() {
            thread::park_timeout(delay);
        }
    }

    /// The one loop: runs `role` on the stack until it is finished, handing each event to
    /// `on_event`; then lets the last segments (the echo, the FIN) leave.
    fn run<'a, R>(
        stack: &mut TapStack<'a>,
        clock: &Clock,
        role: &mut R,
        mut on_event: impl FnMut(&TapEvent<'_>),
    ) -> Result<(), String>
    where
        R: Role<TapStack<'a>>,
    {
        while !role.is_finished() {
            let network = stack.poll(clock.smoltcp());
            let progress = role
                .poll(stack, clock.echo(), |event| on_event(&event))
                .map_err(|e| e.to_string())?;
            if !progress && !network {
                wait(stack, clock, role.next_deadline());
            }
        }
        let until = clock.micros() + 200_000;
        while clock.micros() < until {
            stack.poll(clock.smoltcp());
            wait(stack, clock, None);
        }
        Ok(())
    }

    fn print(event: &TapEvent<'_>) {
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
    fn preview(bytes: &[u8]) -> String {
        let shown = &bytes[..bytes.len().min(64)];
        let text = String::from_utf8_lossy(shown);
        let text = text.trim_end();
        if bytes.len() > shown.len() {
            format!("{text}...")
        } else {
            text.to_string()
        }
    }

    pub fn main() -> ExitCode {
        let args = match parse(std::env::args().skip(1)) {
            Ok(Command::Run(args)) => args,
            Ok(Command::Help) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Err(message) => {
                eprintln!("{message}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        let tap = match TunTapDevice::new(&args.iface) {
            Ok(tap) => tap,
            Err(e) => {
                eprintln!(
                    "cannot open TAP device {}: {e} (root needed; see scripts/tap-netns.sh)",
                    args.iface
                );
                return ExitCode::FAILURE;
            }
        };
        let mut device = DriverDevice::new(tap).expect("a TAP device is Ethernet");
        device.set_waker(Waker::from(Arc::new(Unpark(thread::current()))));

        let mut config = Config::new(device.hardware_address());
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        config.random_seed = since_epoch.as_nanos() as u64 ^ u64::from(std::process::id());
        let mut device = FaultInjector::new(device, config.random_seed as u32);
        device.set_drop_chance(args.loss);
        device.set_corrupt_chance(args.corrupt);
        if args.loss > 0 || args.corrupt > 0 {
            eprintln!(
                "lossy link: {}% of frames dropped, {}% corrupted, each way",
                args.loss, args.corrupt
            );
        }

        let mut storage = [SocketStorage::EMPTY; POOL];
        let mut rx = vec![vec![0u8; TCP_BUFFER]; POOL];
        let mut tx = vec![vec![0u8; TCP_BUFFER]; POOL];
        let mut pairs = rx.iter_mut().zip(tx.iter_mut());
        let buffers = core::array::from_fn(|_| {
            let (rx, tx) = pairs.next().expect("POOL buffer pairs");
            (&mut rx[..], &mut tx[..])
        });
        let options = TcpOptions::new().with_backlog(MAX_CLIENTS);

        let clock = Clock(StdInstant::now());
        let mut stack = Stack::new(
            device,
            config,
            &mut storage,
            buffers,
            options,
            clock.smoltcp(),
        )
        .expect("storage holds the pool");
        stack.set_ipv4(args.ip, args.gateway);

        let mut buffer = vec![0u8; MAX_CLIENTS * echo::DEFAULT_BUFFER_SIZE];
        let ran = match args.mode {
            Mode::Server { idle_timeout } => {
                let mut slots = [const { Slot::new() }; MAX_CLIENTS];
                let config = ServerConfig::new()
                    .with_port(args.port)
                    .with_idle_timeout(idle_timeout);
                let mut server = EchoServer::new(config, &mut slots, &mut buffer);
                run(&mut stack, &clock, &mut server, print)
            }
            Mode::Client { host } => {
                let remote = SocketAddr::from((host, args.port));
                let config = ClientConfig::new(remote)
                    .with_connect_timeout(Some(echo::Duration::from_secs(10)));
                let mut client = EchoClient::new(config, &mut buffer);
                let mut ended_by_server = false;
                let ran = run(&mut stack, &clock, &mut client, |event| {
                    print(event);
                    if let Event::Closed { reason, .. } = event {
                        ended_by_server = *reason == CloseReason::Eof;
                    }
                });
                ran.and_then(|()| match ended_by_server {
                    true => Ok(()),
                    false => Err("the connection did not end with the server's FIN".into()),
                })
            }
        };
        match ran {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("tap: {message}");
                ExitCode::FAILURE
            }
        }
    }
}
