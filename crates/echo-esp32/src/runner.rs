//! The firmware's one loop: the Wi-Fi link, the stack, the application, the display.
//!
//! Each turn: look at the link (station: connect, retry, notice a loss; access point: start,
//! notice a stop), poll smoltcp, answer DHCP (access point), poll the application while the
//! network has an address, draw the screen's changed rows. When nothing moved, the task
//! sleeps 2 ms so the radio's tasks and the idle hook get the CPU.

use core::fmt::{self, Debug, Write};
use core::net::{IpAddr, Ipv4Addr};

use echo::{EchoClient, EchoServer, Event, Instant, Screen};
use echo_esp32_logic::{
    dhcp::DhcpServer,
    text::ShortText,
    wifi::{Action, RetryPolicy, Station},
};
use echo_smoltcp::{
    smoltcp::{
        iface::SocketHandle,
        socket::{dhcpv4, AnySocket},
        wire::{Ipv4Address, Ipv4Cidr},
    },
    TcpClientStack, TcpFullStack,
};
use esp_radio::wifi::WifiController;
use esp_rtos::CurrentThreadHandle;
use log::{debug, info, warn};

use crate::display::Display;
use crate::net::{self, Net};
use crate::wifi::{self, AccessPoint, Credentials};
use crate::{now, smoltcp_now, Duration};

/// The access point's own address: the tutorial's (and most soft APs') 192.168.4.1/24.
pub const AP_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 1);

/// Addresses the access point leases: 192.168.4.2 to 192.168.4.11.
pub const AP_POOL: usize = 10;

/// How often a failed access point start is tried again.
const AP_RETRY: Duration = Duration::from_secs(5);

/// Errors of the application are logged at most this often (a failing listen repeats).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What the loop runs once the network is up: an echo role, or anything that polls a stack.
pub trait App<S> {
    /// The application's error.
    type Error: fmt::Display;

    /// Does the work that can be done now; `Ok(true)` if anything happened. Events go to
    /// `screen`.
    fn poll(
        &mut self,
        stack: &mut S,
        now: Instant,
        screen: &mut Screen,
    ) -> Result<bool, Self::Error>;

    /// The link went down: close what cannot outlive it. `poll` is called again once the
    /// network is back.
    fn network_lost(&mut self, stack: &mut S, screen: &mut Screen);
}

/// The server closes every connection and its listener when the link drops, and listens again
/// on its next `poll` (when the network is back).
impl<S> App<S> for EchoServer<'_, S>
where
    S: TcpFullStack,
    S::Error: Debug,
{
    type Error = echo::Error<S::Error>;

    fn poll(
        &mut self,
        stack: &mut S,
        now: Instant,
        screen: &mut Screen,
    ) -> Result<bool, Self::Error> {
        EchoServer::poll(self, stack, now, |event| show(screen, &event))
    }

    fn network_lost(&mut self, stack: &mut S, screen: &mut Screen) {
        self.shutdown(stack, |event| show(screen, &event));
    }
}

/// The client keeps its connection across a short outage: TCP survives one if the address
/// stays the same, and otherwise the stack's keep-alive and timeout end the connection, after
/// which the client reconnects (configure [`echo::Reconnect`]).
impl<S> App<S> for EchoClient<'_, S>
where
    S: TcpClientStack,
    S::Error: Debug,
{
    type Error = echo::Error<S::Error>;

    fn poll(
        &mut self,
        stack: &mut S,
        now: Instant,
        screen: &mut Screen,
    ) -> Result<bool, Self::Error> {
        EchoClient::poll(self, stack, now, |event| show(screen, &event))
    }

    fn network_lost(&mut self, _stack: &mut S, _screen: &mut Screen) {}
}

/// Logs what echo's own log lines leave out (they cover listening, accepted and established
/// connections, and failed attempts with their retry delay) and applies the event to the
/// screen. Received text is logged by size only.
fn show<E: Debug>(screen: &mut Screen, event: &Event<'_, E>) {
    match event {
        Event::Received { conn, bytes } => debug!("{}: {} bytes", conn, bytes.len()),
        Event::Closed { conn, reason } => info!("server: {} closed ({})", conn, reason.as_str()),
        Event::Connecting { attempt, .. } => info!("client: connecting, attempt {}", attempt),
        Event::ConnectFailed { error, .. } => warn!("client: {}", error),
        Event::Disconnected { conn, reason } => {
            info!("client: {} disconnected ({})", conn, reason.as_str())
        }
        _ => {}
    }
    screen.update(event);
}

/// The station side of the loop: connection attempts, retries, link loss.
pub struct StationMode {
    station: Station,
}

/// The access point side of the loop: start (and restart), the DHCP server.
pub struct AccessPointMode {
    ap: AccessPoint,
    up: bool,
    retry_at: Instant,
    dhcp: DhcpServer<fn() -> u64, AP_POOL>,
    udp: SocketHandle,
}

/// The board with its network, ready to [`run`](Runner::run) an application. `M` is
/// [`StationMode`] or [`AccessPointMode`]: each example links only the code of its mode.
pub struct Runner<'a, M, const N: usize> {
    display: Display,
    wifi: WifiController<'static>,
    stack: Net<'a, N>,
    mode: M,
    address: Option<Ipv4Address>,
    last_error_log: Option<Instant>,
}

fn uptime_secs() -> u64 {
    now().as_millis() / 1000
}

impl<'a, const N: usize> Runner<'a, StationMode, N> {
    pub(crate) fn station(
        display: Display,
        mut wifi: WifiController<'static>,
        mut stack: Net<'a, N>,
        credentials: &Credentials,
    ) -> Self {
        stack
            .enable_dhcpv4()
            .expect("the socket table has room for DHCP");
        if let Err(e) = wifi::configure_station(&mut wifi, credentials) {
            // Invalid settings fail every attempt; each shows the failure.
            warn!("wifi: station settings rejected: {:?}", e);
        }
        let mode = StationMode {
            station: Station::new(RetryPolicy::default()),
        };
        Runner::new(display, wifi, stack, mode)
    }

    /// Runs `app` on the network forever, showing `screen`.
    pub fn run<A>(mut self, mut screen: Screen, mut app: A) -> !
    where
        A: App<Net<'a, N>>,
    {
        loop {
            let now = now();
            let busy = self.supervise_station(now, &mut screen, &mut app);
            let link_up = self.mode.station.is_up();
            self.turn(now, busy, link_up, &mut screen, &mut app, |_, _| false);
        }
    }

    fn supervise_station<A>(&mut self, now: Instant, screen: &mut Screen, app: &mut A) -> bool
    where
        A: App<Net<'a, N>>,
    {
        let associated = self.stack.device_mut().is_link_up();
        match self.mode.station.poll(now, associated) {
            Action::Wait => false,
            Action::Connect { attempt, timeout } => {
                status(screen, format_args!("wifi: connecting {attempt}"));
                self.display.show_now(screen, now);
                info!("wifi: attempt {}", attempt);
                if let Err(failure) = wifi::connect(&mut self.wifi, timeout) {
                    warn!("wifi: attempt {} failed: {}", attempt, failure);
                    status(screen, format_args!("wifi: {failure}"));
                    self.mode.station.attempt_failed(crate::now());
                }
                true
            }
            Action::Up => {
                info!("wifi: connected, waiting for DHCP");
                status(screen, format_args!("dhcp: waiting"));
                // The network may not be the one of the old lease: ask afresh (smoltcp's advice
                // for a link that comes back).
                for (_, socket) in self.stack.sockets_mut().iter_mut() {
                    if let Some(dhcp) = dhcpv4::Socket::downcast_mut(socket) {
                        dhcp.reset();
                    }
                }
                true
            }
            Action::Lost => {
                warn!("wifi: link lost");
                app.network_lost(&mut self.stack, screen);
                status(screen, format_args!("wifi: link lost"));
                true
            }
        }
    }
}

impl<'a, const N: usize> Runner<'a, AccessPointMode, N> {
    pub(crate) fn access_point(
        display: Display,
        wifi: WifiController<'static>,
        mut stack: Net<'a, N>,
        udp: SocketHandle,
        ap: AccessPoint,
    ) -> Self {
        let first = Ipv4Addr::new(192, 168, 4, 2);
        let last = Ipv4Addr::new(192, 168, 4, 1 + AP_POOL as u8);
        stack.set_ipv4(Ipv4Cidr::new(AP_ADDRESS, 24), None);
        let mode = AccessPointMode {
            ap,
            up: false,
            retry_at: Instant::ZERO,
            dhcp: DhcpServer::new(uptime_secs as fn() -> u64, AP_ADDRESS, first..=last),
            udp,
        };
        Runner::new(display, wifi, stack, mode)
    }

    /// Runs `app` on the network forever, showing `screen`.
    pub fn run<A>(mut self, mut screen: Screen, mut app: A) -> !
    where
        A: App<Net<'a, N>>,
    {
        loop {
            let now = now();
            let busy = self.supervise_access_point(now, &mut screen, &mut app);
            let link_up = self.mode.up;
            self.turn(now, busy, link_up, &mut screen, &mut app, |stack, mode| {
                net::serve_dhcp(stack, mode.udp, &mut mode.dhcp)
            });
        }
    }

    fn supervise_access_point<A>(&mut self, now: Instant, screen: &mut Screen, app: &mut A) -> bool
    where
        A: App<Net<'a, N>>,
    {
        let started = self.stack.device_mut().is_link_up();
        let mode = &mut self.mode;
        match (mode.up, started) {
            (false, true) => {
                info!("ap: started on channel {}, 192.168.4.1/24", mode.ap.channel);
                mode.up = true;
                true
            }
            (true, false) => {
                warn!("ap: stopped");
                mode.up = false;
                mode.retry_at = now + AP_RETRY;
                app.network_lost(&mut self.stack, screen);
                status(screen, format_args!("ap: stopped"));
                true
            }
            (false, false) if now >= mode.retry_at => {
                mode.retry_at = now + AP_RETRY;
                if let Err(e) = wifi::start_access_point(&mut self.wifi, &mode.ap) {
                    warn!("ap: start failed: {:?}", e);
                    status(screen, format_args!("ap: {e:?}"));
                }
                true
            }
            _ => false,
        }
    }
}

impl<'a, M, const N: usize> Runner<'a, M, N> {
    fn new(display: Display, wifi: WifiController<'static>, stack: Net<'a, N>, mode: M) -> Self {
        Runner {
            display,
            wifi,
            stack,
            mode,
            address: None,
            last_error_log: None,
        }
    }

    /// The part of a turn both modes share, after the link was looked at: poll the stack, let
    /// the mode serve its own sockets, poll the application while the network is up, draw.
    fn turn<A>(
        &mut self,
        now: Instant,
        mut busy: bool,
        link_up: bool,
        screen: &mut Screen,
        app: &mut A,
        serve: impl FnOnce(&mut Net<'a, N>, &mut M) -> bool,
    ) where
        A: App<Net<'a, N>>,
    {
        busy |= self.stack.poll(smoltcp_now());
        if link_up {
            busy |= serve(&mut self.stack, &mut self.mode);
        }
        self.watch_address(screen);
        if link_up && self.address.is_some() {
            match app.poll(&mut self.stack, now, screen) {
                Ok(progress) => busy |= progress,
                Err(e) => self.report(now, screen, &e),
            }
        }
        self.display.show(screen, now);
        if !busy {
            self.idle();
        }
    }

    /// Shows and logs the interface's IPv4 address when it changes.
    fn watch_address(&mut self, screen: &mut Screen) {
        let address = self.stack.ipv4_address().map(|cidr| cidr.address());
        if address == self.address {
            return;
        }
        self.address = address;
        match address {
            Some(ip) => {
                info!("net: address {}", ip);
                screen.set_local_ip(IpAddr::V4(ip));
            }
            None => info!("net: no address"),
        }
    }

    fn report(&mut self, now: Instant, screen: &mut Screen, error: &dyn fmt::Display) {
        let due = self
            .last_error_log
            .is_none_or(|last| now - last >= ERROR_LOG_INTERVAL);
        if due {
            self.last_error_log = Some(now);
            warn!("app: {}", error);
            status(screen, format_args!("{error}"));
        }
    }

    /// A fixed pause rather than smoltcp's `poll_delay` (1.4 KB of flash): 2 ms is finer than
    /// its shortest timer (the 10 ms delayed ACK), and it only asks for less when the radio's
    /// transmit queue was full, which the pause lets drain.
    fn idle(&mut self) {
        CurrentThreadHandle::get().delay(esp_hal::time::Duration::from_millis(2));
    }
}

/// Shows a board message on the screen (one row; longer text is cut).
fn status(screen: &mut Screen, message: core::fmt::Arguments<'_>) {
    let mut text = ShortText::<{ echo::COLUMNS * 4 }>::new();
    let _ = text.write_fmt(message);
    screen.set_status(text.as_str());
}
