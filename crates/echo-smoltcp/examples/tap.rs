//! The echo server or client on a Linux TAP interface, through the same path as on an
//! ESP32: TAP driver (embassy-net-tuntap, an embassy-net-driver `Driver` like esp-radio's
//! WiFi) -> `DriverDevice` -> smoltcp -> `echo_smoltcp::Stack` -> the `echo` core. The peer
//! is the Linux kernel's TCP on the other side of the TAP device. Linux only; needs root
//! (or CAP_NET_ADMIN) to open the TAP device.
//!
//! ```text
//! tap server --iface tap0 --ip 192.168.69.2/24 [--port 5001] [--gateway 192.168.69.1]
//!     prints `listening on 192.168.69.2:5001` once ready; serves up to 3 clients at once
//! tap client --iface tap0 --ip 192.168.69.2/24 --host 192.168.69.1 [--port 6000]
//!     sends the greeting, echoes what the server sends, exits 0 when the server closes
//! ```
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

    use echo::{ClientConfig, CloseReason, EchoClient, EchoServer, Event, ServerConfig, Slot};
    use echo_smoltcp::smoltcp::iface::{Config, SocketStorage};
    use echo_smoltcp::smoltcp::time::Instant;
    use echo_smoltcp::smoltcp::wire::{Ipv4Address, Ipv4Cidr};
    use echo_smoltcp::{DriverDevice, Stack, TcpOptions};
    use embassy_net_tuntap::TunTapDevice;

    const USAGE: &str = "usage:
      tap server --iface IFACE --ip ADDR/PREFIX [--port PORT] [--gateway ADDR]
      tap client --iface IFACE --ip ADDR/PREFIX --host ADDR [--port PORT] [--gateway ADDR]";

    /// Clients served at once, and the listen backlog: the tutorial's `listen(3)`.
    const MAX_CLIENTS: usize = echo::DEFAULT_MAX_CLIENTS;
    /// Pool sockets: every client served plus a full backlog behind them.
    const POOL: usize = 2 * MAX_CLIENTS;
    /// Per-socket receive and transmit buffer.
    const TCP_BUFFER: usize = 16 * 1024;
    /// Longest sleep between polls when the stack has no timer due sooner.
    const MAX_WAIT: StdDuration = StdDuration::from_millis(20);

    type TapStack<'a> = Stack<'a, DriverDevice<TunTapDevice>, POOL>;

    #[derive(Debug, PartialEq)]
    enum Mode {
        Server,
        Client { host: Ipv4Addr },
    }

    #[derive(Debug)]
    struct Args {
        mode: Mode,
        iface: String,
        ip: Ipv4Cidr,
        port: u16,
        gateway: Option<Ipv4Address>,
    }

    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mode = args.next().ok_or("missing mode: server or client")?;
        let (mut iface, mut ip, mut port, mut host, mut gateway) = (None, None, None, None, None);
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
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        let mode = match mode.as_str() {
            "server" => Mode::Server,
            "client" => Mode::Client {
                host: host.ok_or("client mode needs --host")?,
            },
            other => return Err(format!("unknown mode {other}")),
        };
        let default_port = match mode {
            Mode::Server => echo::DEFAULT_PORT,
            Mode::Client { .. } => 6000,
        };
        Ok(Args {
            mode,
            iface: iface.ok_or("missing --iface")?,
            ip: ip.ok_or("missing --ip")?,
            port: port.unwrap_or(default_port),
            gateway,
        })
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

    /// Sleeps until a frame arrives, a stack timer is due, or `MAX_WAIT`.
    fn wait(stack: &mut TapStack<'_>, clock: &Clock) {
        let delay = stack
            .poll_delay(clock.smoltcp())
            .map(|d| StdDuration::from_micros(d.total_micros()))
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT);
        if !delay.is_zero() {
            thread::park_timeout(delay);
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

    fn run_server(stack: &mut TapStack<'_>, clock: &Clock, ip: Ipv4Address, port: u16) -> ExitCode {
        let mut slots = [const { Slot::new() }; MAX_CLIENTS];
        let mut buffer = [0u8; MAX_CLIENTS * echo::DEFAULT_BUFFER_SIZE];
        let config = ServerConfig {
            port,
            ..ServerConfig::default()
        };
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        loop {
            let network = stack.poll(clock.smoltcp());
            let progress = server.poll(stack, clock.echo(), |event| match event {
                Event::Listening { port } => println!("listening on {ip}:{port}"),
                Event::Accepted { conn, peer } => println!("{conn} accepted from {peer}"),
                Event::Received { conn, bytes } => {
                    println!("{conn} received {} bytes: {}", bytes.len(), preview(bytes))
                }
                Event::Closed { conn, reason } => println!("{conn} closed: {}", reason.as_str()),
                _ => {}
            });
            match progress {
                Ok(true) => {}
                Ok(false) if network => {}
                Ok(false) => wait(stack, clock),
                // The server listens again on its next poll.
                Err(e) => eprintln!("server: {e}"),
            }
        }
    }

    fn run_client(stack: &mut TapStack<'_>, clock: &Clock, remote: SocketAddr) -> ExitCode {
        let mut config = ClientConfig::new(remote);
        config.connect_timeout = Some(echo::Duration::from_secs(10));
        let mut buffer = [0u8; echo::DEFAULT_BUFFER_SIZE];
        let mut client = EchoClient::new(config, &mut buffer);
        let mut ended_by_server = false;
        while !client.is_finished() {
            let network = stack.poll(clock.smoltcp());
            let progress = client.poll(stack, clock.echo(), |event| match event {
                Event::Connecting { remote, attempt } => {
                    println!("connecting to {remote} (attempt {attempt})")
                }
                Event::Connected { remote, .. } => println!("connected to {remote}"),
                Event::Received { bytes, .. } => {
                    println!("received {} bytes: {}", bytes.len(), preview(bytes))
                }
                Event::Disconnected { reason, .. } => {
                    println!("disconnected: {}", reason.as_str());
                    ended_by_server = reason == CloseReason::Eof;
                }
                _ => {}
            });
            match progress {
                Ok(true) => {}
                Ok(false) if network => {}
                Ok(false) => wait(stack, clock),
                Err(e) => {
                    eprintln!("client: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        // Let the FIN (and the last echo) leave before the process, and the socket, go away.
        let until = clock.micros() + 200_000;
        while clock.micros() < until {
            stack.poll(clock.smoltcp());
            wait(stack, clock);
        }
        if ended_by_server {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    pub fn main() -> ExitCode {
        let args = match parse(std::env::args().skip(1)) {
            Ok(args) => args,
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

        let mut storage = [SocketStorage::EMPTY; POOL];
        let mut rx = vec![vec![0u8; TCP_BUFFER]; POOL];
        let mut tx = vec![vec![0u8; TCP_BUFFER]; POOL];
        let mut pairs = rx.iter_mut().zip(tx.iter_mut());
        let buffers = core::array::from_fn(|_| {
            let (rx, tx) = pairs.next().expect("POOL buffer pairs");
            (&mut rx[..], &mut tx[..])
        });
        let mut options = TcpOptions::default();
        options.backlog = MAX_CLIENTS;

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

        match args.mode {
            Mode::Server => run_server(&mut stack, &clock, args.ip.address(), args.port),
            Mode::Client { host } => {
                run_client(&mut stack, &clock, SocketAddr::from((host, args.port)))
            }
        }
    }
}
