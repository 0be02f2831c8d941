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
#[path = "common/cli.rs"]
mod cli;

#[cfg(target_os = "linux")]
mod linux {
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::thread::{self, Thread};
    use std::time::{Duration as StdDuration, Instant as StdInstant, SystemTime};

    use echo::{ClientConfig, EchoClient, EchoServer, Event, Role, ServerConfig, Slot};
    use echo_smoltcp::smoltcp::iface::{Config, SocketStorage};
    use echo_smoltcp::smoltcp::phy::FaultInjector;
    use echo_smoltcp::smoltcp::time::Instant;
    use echo_smoltcp::smoltcp::wire::Ipv4Cidr;
    use echo_smoltcp::{DriverDevice, Stack, TcpOptions};
    use embassy_net_tuntap::TunTapDevice;

    use crate::cli::{exit, print, start, ClientEnd, Mode, TextScreen};

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

    pub fn main() -> ExitCode {
        let (args, tap) = match start("tap") {
            Ok(started) => started,
            Err(code) => return code,
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
        let (ip, prefix) = args.ip;
        stack.set_ipv4(Ipv4Cidr::new(ip, prefix), args.gateway);

        let mut buffer = vec![0u8; MAX_CLIENTS * echo::DEFAULT_BUFFER_SIZE];
        let ran = match args.mode {
            Mode::Server { idle_timeout } => {
                let mut slots = [const { Slot::new() }; MAX_CLIENTS];
                let config = ServerConfig::new()
                    .with_port(args.port)
                    .with_idle_timeout(idle_timeout);
                let mut server = EchoServer::new(config, &mut slots, &mut buffer);
                let mut screen = TextScreen::new(echo::Screen::server());
                run(&mut stack, &clock, &mut server, |event| {
                    print(event);
                    screen.update(event);
                })
            }
            Mode::Client { host } => {
                let remote = SocketAddr::from((host, args.port));
                let config = ClientConfig::new(remote)
                    .with_connect_timeout(Some(echo::Duration::from_secs(10)));
                let mut client = EchoClient::new(config, &mut buffer);
                let mut end = ClientEnd::new();
                let mut screen = TextScreen::new(echo::Screen::client());
                let ran = run(&mut stack, &clock, &mut client, |event| {
                    print(event);
                    screen.update(event);
                    end.update(event);
                });
                end.outcome(ran)
            }
        };
        exit("tap", ran)
    }
}
