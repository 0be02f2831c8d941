//! The firmware's one loop: the Wi-Fi link, the stack, the echo role, the display.
//!
//! Each turn: look at the link ([`Mode`]: the station connects, retries and notices a loss;
//! the access point starts and notices a stop), poll smoltcp, let the mode serve its own
//! sockets (the access point's DHCP server), watch the address (a new one restarts the role),
//! poll the role while the network has an address, and draw the screen's changed rows. When
//! nothing moved, the task sleeps 2 ms so the radio's tasks and the idle hook get the CPU.

use core::fmt::Write;
use core::net::Ipv4Addr;

use echo::{Event, Instant, Layout, Role, Screen};
use echo_esp32_logic::{
    address::{AddressChange, AddressWatch},
    dhcp::DhcpServer,
    text::ShortText,
    wifi::{Action, RetryPolicy, Station},
};
use echo_smoltcp::smoltcp::{
    iface::SocketHandle,
    socket::{dhcpv4, AnySocket},
    wire::Ipv4Cidr,
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

/// What a mode's look at the link found.
#[derive(Clone, Copy, Default)]
pub struct Supervised {
    /// Something happened (poll again at once).
    pub busy: bool,
    /// Every peer is gone with the link (the access point stopped): close the role's
    /// connections rather than wait for keep-alives to find them dead.
    pub peers_gone: bool,
}

/// What differs between the board as a station and as an access point: bringing the link up,
/// and the sockets the board serves itself.
pub trait Mode {
    /// Looks at the Wi-Fi link; may block for a connection attempt (after showing it).
    fn supervise<L: Layout, const N: usize>(
        &mut self,
        now: Instant,
        board: &mut Parts<'_, '_, N>,
        screen: &mut Screen<L>,
    ) -> Supervised;

    /// Whether the link is up.
    fn link_up(&self) -> bool;

    /// Serves the board's own sockets after each stack poll; returns whether any work was done.
    fn serve<const N: usize>(&mut self, stack: &mut Net<'_, N>) -> bool;
}

/// What [`Mode::supervise`] may use of the runner.
pub struct Parts<'r, 'a, const N: usize> {
    /// The radio.
    pub wifi: &'r mut WifiController<'static>,
    /// The network stack.
    pub stack: &'r mut Net<'a, N>,
    /// The display, for a status shown before a blocking step.
    pub display: &'r mut Display,
}

/// The station side of the loop: connection attempts, retries, link loss.
pub struct StationMode {
    station: Station,
}

impl Mode for StationMode {
    fn supervise<L: Layout, const N: usize>(
        &mut self,
        now: Instant,
        board: &mut Parts<'_, '_, N>,
        screen: &mut Screen<L>,
    ) -> Supervised {
        let associated = board.stack.device_mut().is_link_up();
        let busy = match self.station.poll(now, associated) {
            Action::Wait => false,
            Action::Connect { attempt, timeout } => {
                status(screen, format_args!("wifi: connecting {attempt}"));
                board.display.show_now(screen, now);
                info!("wifi: attempt {}", attempt);
                if let Err(failure) = wifi::connect(board.wifi, timeout) {
                    warn!("wifi: attempt {} failed: {}", attempt, failure);
                    status(screen, format_args!("wifi: {failure}"));
                    self.station.attempt_failed(crate::now());
                }
                true
            }
            Action::Up => {
                info!("wifi: connected, waiting for DHCP");
                status(screen, format_args!("dhcp: waiting"));
                // The network may not be the one of the old lease: ask afresh (smoltcp's advice
                // for a link that comes back). A different address restarts the role.
                for (_, socket) in board.stack.sockets_mut().iter_mut() {
                    if let Some(dhcp) = dhcpv4::Socket::downcast_mut(socket) {
                        dhcp.reset();
                    }
                }
                true
            }
            Action::Lost => {
                // Connections may survive a short outage; the address watch and the stack's
                // keep-alive decide what cannot.
                warn!("wifi: link lost");
                status(screen, format_args!("wifi: link lost"));
                true
            }
        };
        Supervised {
            busy,
            peers_gone: false,
        }
    }

    fn link_up(&self) -> bool {
        self.station.is_up()
    }

    fn serve<const N: usize>(&mut self, _stack: &mut Net<'_, N>) -> bool {
        false
    }
}

/// The access point side of the loop: start (and restart), the DHCP server.
pub struct AccessPointMode {
    ap: AccessPoint,
    up: bool,
    retry_at: Instant,
    dhcp: DhcpServer<fn() -> u64, AP_POOL>,
    udp: SocketHandle,
}

impl Mode for AccessPointMode {
    fn supervise<L: Layout, const N: usize>(
        &mut self,
        now: Instant,
        board: &mut Parts<'_, '_, N>,
        screen: &mut Screen<L>,
    ) -> Supervised {
        let started = board.stack.device_mut().is_link_up();
        let mut supervised = Supervised::default();
        match (self.up, started) {
            (false, true) => {
                info!("ap: started on channel {}, 192.168.4.1/24", self.ap.channel);
                self.up = true;
                supervised.busy = true;
            }
            (true, false) => {
                warn!("ap: stopped");
                self.up = false;
                self.retry_at = now + AP_RETRY;
                status(screen, format_args!("ap: stopped"));
                supervised = Supervised {
                    busy: true,
                    peers_gone: true,
                };
            }
            (false, false) if now >= self.retry_at => {
                self.retry_at = now + AP_RETRY;
                if let Err(e) = wifi::start_access_point(board.wifi, &self.ap) {
                    warn!("ap: start failed: {:?}", e);
                    status(screen, format_args!("ap: {e:?}"));
                }
                supervised.busy = true;
            }
            _ => {}
        }
        supervised
    }

    fn link_up(&self) -> bool {
        self.up
    }

    fn serve<const N: usize>(&mut self, stack: &mut Net<'_, N>) -> bool {
        net::serve_dhcp(stack, self.udp, &mut self.dhcp)
    }
}

/// The board with its network, ready to [`run`](Runner::run) an echo role. `M` is
/// [`StationMode`] or [`AccessPointMode`]: each example links only the code of its mode.
pub struct Runner<'a, M, const N: usize> {
    display: Display,
    wifi: WifiController<'static>,
    stack: Net<'a, N>,
    mode: M,
    address: AddressWatch,
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
}

impl<'a, M: Mode, const N: usize> Runner<'a, M, N> {
    fn new(display: Display, wifi: WifiController<'static>, stack: Net<'a, N>, mode: M) -> Self {
        Runner {
            display,
            wifi,
            stack,
            mode,
            address: AddressWatch::new(),
        }
    }

    /// Runs `role` on the network forever, showing `screen`.
    pub fn run<R, L>(mut self, mut screen: Screen<L>, mut role: R) -> !
    where
        R: Role<Net<'a, N>>,
        L: Layout,
    {
        loop {
            let now = now();
            let mut parts = Parts {
                wifi: &mut self.wifi,
                stack: &mut self.stack,
                display: &mut self.display,
            };
            let supervised = self.mode.supervise(now, &mut parts, &mut screen);
            let mut busy = supervised.busy;
            if supervised.peers_gone {
                role.restart(&mut self.stack, |event| show(&mut screen, &event));
            }
            busy |= self.stack.poll(smoltcp_now());
            let link_up = self.mode.link_up();
            if link_up {
                busy |= self.mode.serve(&mut self.stack);
            }
            busy |= self.watch_address(&mut screen, &mut role);
            if link_up && self.address.current().is_some() {
                match role.poll(&mut self.stack, now, |event| show(&mut screen, &event)) {
                    Ok(progress) => busy |= progress,
                    // The client gave up (no reconnection configured): it stays finished and
                    // its screen says so.
                    Err(e) => warn!("echo: {}", e),
                }
            }
            busy |= self.display.show(&mut screen, now);
            if !busy {
                self.idle();
            }
        }
    }

    /// Logs the interface's IPv4 address when it changes, and restarts the role when the
    /// address it works on is no longer the board's. Returns whether anything changed.
    fn watch_address<R, L>(&mut self, screen: &mut Screen<L>, role: &mut R) -> bool
    where
        R: Role<Net<'a, N>>,
        L: Layout,
    {
        let address = self.stack.ipv4_address().map(|cidr| cidr.address());
        let change = self.address.update(address);
        report_address(change, screen);
        match change {
            AddressChange::Same => return false,
            AddressChange::Moved(_) => {
                role.restart(&mut self.stack, |event| show(screen, &event));
            }
            AddressChange::Lost | AddressChange::Back(_) => {}
        }
        true
    }

    /// A fixed pause rather than smoltcp's `poll_delay`: 2 ms is finer than its shortest timer
    /// (the 10 ms delayed ACK), and it only asks for less when the radio's transmit queue was
    /// full, which the pause lets drain.
    fn idle(&mut self) {
        CurrentThreadHandle::get().delay(esp_hal::time::Duration::from_millis(2));
    }
}

/// Logs what the interface's address did, and says on the screen when it is gone.
pub(crate) fn report_address<L: Layout>(change: AddressChange, screen: &mut Screen<L>) {
    match change {
        AddressChange::Same => {}
        AddressChange::Lost => {
            info!("net: no address");
            status(screen, format_args!("net: no address"));
        }
        AddressChange::Back(ip) => info!("net: address {}", ip),
        AddressChange::Moved(ip) => info!("net: new address {}; starting over", ip),
    }
}

/// Logs what echo's own log lines leave out (they cover listening, accepted and established
/// connections, and failures with their retry delay) and applies the event to the screen.
/// Received text is logged by size only.
pub(crate) fn show<L: Layout, E: core::fmt::Debug>(screen: &mut Screen<L>, event: &Event<'_, E>) {
    match event {
        Event::Received { conn, bytes } => debug!("{}: {} bytes", conn, bytes.len()),
        Event::Closed { conn, reason, .. } => info!("{} closed ({})", conn, reason.as_str()),
        Event::Connecting { attempt, .. } => info!("connecting, attempt {}", attempt),
        _ => {}
    }
    screen.update(event);
}

/// Shows a board message on the screen (one row; longer text is cut).
pub(crate) fn status<L: Layout>(screen: &mut Screen<L>, message: core::fmt::Arguments<'_>) {
    let mut text = ShortText::<{ echo::COLUMNS * 4 }>::new();
    let _ = text.write_fmt(message);
    screen.set_status(text.as_str());
}
