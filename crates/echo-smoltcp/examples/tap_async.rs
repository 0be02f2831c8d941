//! The async echo server or client on a Linux TAP interface, through the path async firmware
//! takes on an ESP32: TAP driver (embassy-net-tuntap, an embassy-net-driver `Driver` like
//! esp-radio's WiFi) -> embassy-net -> `echo_embassy::Tcp` (edge-nal and embedded-nal-async)
//! -> `echo::asynch`. The same command line and output as the `tap` example, and the same
//! TAP tests. Linux only; needs root (or CAP_NET_ADMIN) to open the TAP device.
//!
//! ```text
//! tap_async server --iface tap0 --ip 192.168.69.2/24 [--port 5001] [--gateway 192.168.69.1]
//!                  [--idle-timeout SECS] [--loss PERCENT] [--corrupt PERCENT]
//! tap_async client --iface tap0 --ip 192.168.69.2/24 --host 192.168.69.1 [--port 6000]
//!                  [--loss PERCENT] [--corrupt PERCENT]
//! ```
//!
//! The executor is async-io's `block_on` (one thread, parked until a waker fires), with
//! embassy-time's std driver: the futures are the ones firmware runs under esp-rtos.
//! `--loss` and `--corrupt` drop or corrupt that share of the frames each way, in a `Driver`
//! around the TAP device. Setting the device up: see the `tap` example.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the tap_async example needs Linux TAP devices");
}

#[cfg(target_os = "linux")]
#[path = "common/cli.rs"]
mod cli;

#[cfg(target_os = "linux")]
mod linux {
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::task::Context;
    use std::time::SystemTime;

    use echo::asynch::{AsyncEchoClient, AsyncEchoServer};
    use echo::{ClientConfig, ServerConfig};
    use echo_embassy::embassy_net::driver::{
        Capabilities, Driver, HardwareAddress, LinkState, RxToken, TxToken,
    };
    use echo_embassy::embassy_net::{self, Ipv4Cidr, StackResources, StaticConfigV4};
    use echo_embassy::{Clock, Tcp, TcpBuffers, TcpOptions};
    use embassy_futures::select::{select, Either};
    use embassy_time::{Duration, Timer};

    use crate::cli::{exit, print, start, ClientEnd, Mode, TextScreen};

    /// Clients served at once, and waiting: three and three, like the `tap` example (the
    /// tutorial's `listen(3)`).
    const MAX_CLIENTS: usize = echo::DEFAULT_MAX_CLIENTS;
    const BACKLOG: usize = 3;
    /// Pool sockets: every client served or waiting, and two finishing their close.
    const POOL: usize = MAX_CLIENTS + BACKLOG + 2;
    /// Per-socket receive and transmit buffer, as in the `tap` example.
    const TCP_BUFFER: usize = 16 * 1024;

    /// A `Driver` that drops or corrupts a share of the frames each way, as a lossy WiFi link
    /// does (the `tap` example uses smoltcp's `FaultInjector`, which is a smoltcp `Device`).
    struct Lossy<D> {
        inner: D,
        loss: u8,
        corrupt: u8,
        state: u32,
    }

    /// What happens to one frame.
    #[derive(Clone, Copy)]
    struct Fate {
        drop: bool,
        /// Which byte to corrupt, if any.
        corrupt: Option<u32>,
    }

    impl<D> Lossy<D> {
        /// xorshift32: a different sequence each run, from the seed.
        fn next(&mut self) -> u32 {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.state = x;
            x
        }

        fn fate(&mut self) -> Fate {
            let drop = self.next() % 100 < u32::from(self.loss);
            let corrupt = (self.next() % 100 < u32::from(self.corrupt)).then(|| self.next());
            Fate { drop, corrupt }
        }
    }

    fn spoil(frame: &mut [u8], fate: Fate) {
        if let (Some(at), false) = (fate.corrupt, frame.is_empty()) {
            let at = at as usize % frame.len();
            frame[at] ^= 0x5a;
        }
    }

    struct LossyRx<T>(T, Fate);
    struct LossyTx<T>(T, Fate);

    impl<T: RxToken> RxToken for LossyRx<T> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
            let fate = self.1;
            self.0.consume(|frame| {
                spoil(frame, fate);
                f(frame)
            })
        }
    }

    impl<T: TxToken> TxToken for LossyTx<T> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let fate = self.1;
            if fate.drop {
                // Built, never sent.
                return f(&mut vec![0u8; len]);
            }
            self.0.consume(len, |frame| {
                let result = f(frame);
                spoil(frame, fate);
                result
            })
        }
    }

    impl<D: Driver> Driver for Lossy<D> {
        type RxToken<'a>
            = LossyRx<D::RxToken<'a>>
        where
            Self: 'a;
        type TxToken<'a>
            = LossyTx<D::TxToken<'a>>
        where
            Self: 'a;

        fn receive(&mut self, cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
            let (incoming, reply) = (self.fate(), self.fate());
            if incoming.drop {
                if let Some((rx, _)) = self.inner.receive(cx) {
                    rx.consume(|_| ());
                    // The next frame may be waiting already: ask to be polled again.
                    cx.waker().wake_by_ref();
                }
                return None;
            }
            let (rx, tx) = self.inner.receive(cx)?;
            Some((LossyRx(rx, incoming), LossyTx(tx, reply)))
        }

        fn transmit(&mut self, cx: &mut Context) -> Option<Self::TxToken<'_>> {
            let fate = self.fate();
            self.inner.transmit(cx).map(|tx| LossyTx(tx, fate))
        }

        fn link_state(&mut self, cx: &mut Context) -> LinkState {
            self.inner.link_state(cx)
        }

        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }

        fn hardware_address(&self) -> HardwareAddress {
            self.inner.hardware_address()
        }
    }

    pub fn main() -> ExitCode {
        let (args, tap) = match start("tap_async") {
            Ok(started) => started,
            Err(code) => return code,
        };
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = since_epoch.as_nanos() as u64 ^ u64::from(std::process::id());
        let device = Lossy {
            inner: tap,
            loss: args.loss,
            corrupt: args.corrupt,
            state: (seed as u32) | 1,
        };
        if args.loss > 0 || args.corrupt > 0 {
            eprintln!(
                "lossy link: {}% of frames dropped, {}% corrupted, each way",
                args.loss, args.corrupt
            );
        }

        let (ip, prefix) = args.ip;
        let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(ip, prefix),
            gateway: args.gateway,
            dns_servers: Default::default(),
        });
        let mut resources = StackResources::<POOL>::new();
        let (stack, mut runner) = embassy_net::new(device, config, &mut resources, seed);
        let mut buffers = Box::new(TcpBuffers::<POOL, TCP_BUFFER, TCP_BUFFER>::new());
        let tcp = Tcp::new(stack, &mut buffers, TcpOptions::new());
        let mut buffer = vec![0u8; MAX_CLIENTS * echo::DEFAULT_BUFFER_SIZE];

        let role = async {
            stack.wait_config_up().await;
            match args.mode {
                Mode::Server { idle_timeout } => {
                    let config = ServerConfig::new()
                        .with_port(args.port)
                        .with_idle_timeout(idle_timeout);
                    let mut server =
                        AsyncEchoServer::<MAX_CLIENTS, BACKLOG>::new(config, &mut buffer);
                    let mut screen = TextScreen::new(echo::Screen::server());
                    server
                        .run(&tcp, &Clock, |event| {
                            print(&event);
                            screen.update(&event);
                        })
                        .await;
                    Ok(())
                }
                Mode::Client { host } => {
                    let remote = SocketAddr::from((host, args.port));
                    let config = ClientConfig::new(remote)
                        .with_connect_timeout(Some(echo::Duration::from_secs(10)));
                    let mut client = AsyncEchoClient::new(config, &mut buffer);
                    let mut end = ClientEnd::new();
                    let mut screen = TextScreen::new(echo::Screen::client());
                    let ran = client
                        .run(&tcp, &Clock, |event| {
                            print(&event);
                            screen.update(&event);
                            end.update(&event);
                        })
                        .await;
                    // Let the last segments (the echo, the FIN) leave.
                    Timer::after(Duration::from_millis(200)).await;
                    end.outcome(ran.map_err(|e| e.to_string()))
                }
            }
        };
        let ran = async_io::block_on(async {
            match select(runner.run(), role).await {
                Either::First(never) => match never {},
                Either::Second(ran) => ran,
            }
        });
        exit("tap_async", ran)
    }
}
