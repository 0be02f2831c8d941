//! The async firmware (`tcp_server_async`, `tcp_client_async`): the blocking examples' station
//! on esp-rtos's embassy executor, embassy-net with its DHCP client, and echo's async roles
//! over `echo-embassy`.
//!
//! ```ignore
//! static MEMORY: ConstStaticCell<AsyncNetMemory<6, 7>> = ConstStaticCell::new(AsyncNetMemory::new());
//!
//! #[esp_rtos::main]
//! async fn main(spawner: Spawner) -> ! {
//!     let station = Board::init().station_async(spawner, MEMORY.take(), CREDENTIALS);
//!     let server = AsyncEchoServer::<3>::new(config, &mut buffer);
//!     station.run(Screen::server(), server).await          // never returns
//! }
//! ```
//!
//! What runs where, all on the one executor of `#[esp_rtos::main]`:
//! - the network task: embassy-net's runner (the radio's frames, TCP timers, the DHCP client,
//!   which starts afresh whenever the link comes back);
//! - the link task: owns the radio's controller; connects, retries and notices a loss as the
//!   blocking examples do ([`Station`] with the default [`RetryPolicy`]: 15 s per attempt,
//!   retried 1 s, 2 s, 4 s ... 30 s apart), and tells the screen;
//! - `main`, in [`AsyncStation::run`]: two loops in one task. The role loop runs the echo role
//!   while the interface has an address, and stops and runs it again when DHCP gives a
//!   different one (the same one back keeps the connections). The display loop draws the
//!   screen at the panel's pace, one page at a time, yielding between pages. The role's events
//!   update the screen from a plain callback and wake the display loop: the echo never awaits
//!   the display.
//!
//! Memory: the socket table and the socket buffers are in a `static` ([`AsyncNetMemory`]), and
//! `main`'s locals (the echo buffer) are in its task's `static` future: all of it is static
//! RAM, where the blocking examples keep it on `main`'s stack.

use core::cell::{Cell, RefCell};
use core::fmt::Write;
use core::future::{poll_fn, Future};
use core::net::Ipv4Addr;
use core::pin::pin;
use core::task::Poll;

use echo::asynch::{AsyncRole, Clock as _};
use echo::{Instant, Layout, Screen};
use echo_embassy::{Clock, Error as TcpError, Tcp, TcpBuffers, TcpOptions};
use echo_esp32_logic::address::{AddressChange, AddressWatch};
use echo_esp32_logic::oled::{FRAME_INTERVAL, RETRY_INTERVAL};
use echo_esp32_logic::text::ShortText;
use echo_esp32_logic::wifi::{Action, RetryPolicy, Station};
use embassy_executor::Spawner;
use embassy_futures::select::{select, select3, Either, Either3};
use embassy_futures::yield_now;
use embassy_net::{Runner, Stack, StackResources};
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
use embassy_sync::signal::Signal;
use embassy_time::Timer;
use esp_radio::wifi::{Interface, WifiController};
use log::{info, warn};

use crate::display::Display;
use crate::net::{random_seed, TCP_RX, TCP_TX};
use crate::runner::{report_address, show};
use crate::wifi::{self, Credentials};
use crate::{Board, Duration};

/// How often the link task looks at the radio's state while the link is up, besides waiting
/// for its disconnection event: esp-radio looks at the state before it starts listening for
/// events, so a disconnection in between would go unseen.
const LINK_CHECK: Duration = Duration::from_secs(1);

/// A message for the screen's status row.
type Status = ShortText<{ echo::COLUMNS * 4 }>;

/// The link task's latest message for the screen. Whoever touches the screen applies it first
/// ([`SharedScreen::with`]), so it shows under what happened after it was posted.
static LINK: Signal<CriticalSectionRawMutex, Status> = Signal::new();

/// Memory for the async network, to be put in a `static` (the network task uses it for ever):
/// embassy-net's socket table of `S` entries and the buffers of a pool of `P` TCP sockets
/// ([`TCP_RX`] + [`TCP_TX`] bytes each).
///
/// `S` counts every socket of the stack: the pool and the DHCP client, so `P + 1` (embassy-net
/// panics when its table is full). Size `P` as `echo-embassy` says: every accept the server
/// keeps pending (`N + BACKLOG`) or the client's connection, plus spares for connections still
/// closing; [`AsyncStation::run`] checks that there is at least one spare.
pub struct AsyncNetMemory<const P: usize, const S: usize> {
    resources: StackResources<S>,
    tcp: TcpBuffers<P, TCP_RX, TCP_TX>,
}

impl<const P: usize, const S: usize> AsyncNetMemory<P, S> {
    /// Zeroed memory for `P` pooled TCP sockets and the DHCP client (`S = P + 1`).
    pub const fn new() -> Self {
        const {
            assert!(
                P >= 1 && S == P + 1,
                "S counts the pool's P sockets and DHCP's"
            )
        };
        AsyncNetMemory {
            resources: StackResources::new(),
            tcp: TcpBuffers::new(),
        }
    }
}

impl<const P: usize, const S: usize> Default for AsyncNetMemory<P, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl Board {
    /// The board as a Wi-Fi station of `credentials`' network on embassy-net, its address from
    /// DHCP: spawns the network task and the link task on `spawner`, and hands back what
    /// `main` runs the echo role and the display with.
    ///
    /// # Panics
    /// If called twice (each task runs once).
    pub fn station_async<const P: usize, const S: usize>(
        mut self,
        spawner: Spawner,
        memory: &'static mut AsyncNetMemory<P, S>,
        credentials: Credentials,
    ) -> AsyncStation<P> {
        if let Err(e) = wifi::configure_station(&mut self.wifi, &credentials) {
            // Invalid settings fail every attempt; each shows the failure.
            warn!("wifi: station settings rejected: {:?}", e);
        }
        let AsyncNetMemory { resources, tcp } = memory;
        let config = embassy_net::Config::dhcpv4(Default::default());
        let (stack, runner) =
            embassy_net::new(Interface::station(), config, resources, random_seed());
        spawner.spawn(network(runner).expect("the network task is spawned once"));
        spawner.spawn(link(self.wifi).expect("the link task is spawned once"));
        AsyncStation {
            display: self.display,
            stack,
            tcp: Tcp::new(stack, tcp, TcpOptions::new()),
        }
    }
}

/// embassy-net's runner: frames in and out, TCP timers, the DHCP client.
#[embassy_executor::task]
async fn network(mut runner: Runner<'static, Interface>) -> ! {
    runner.run().await
}

/// The Wi-Fi link: one attempt at a time bounded by the policy's timeout, retries after the
/// backoff, a loss noticed and reconnected. embassy-net asks DHCP afresh when the link comes
/// back; whether the address changed is the role loop's business.
#[embassy_executor::task]
async fn link(mut wifi: WifiController<'static>) -> ! {
    let mut station = Station::new(RetryPolicy::default());
    loop {
        match station.poll(Clock.now(), wifi.is_connected()) {
            Action::Connect { attempt, timeout } => {
                post(format_args!("wifi: connecting {attempt}"));
                info!("wifi: attempt {}", attempt);
                if let Err(failure) = wifi::connect_within(&mut wifi, timeout).await {
                    warn!("wifi: attempt {} failed: {}", attempt, failure);
                    post(format_args!("wifi: {failure}"));
                    station.attempt_failed(Clock.now());
                }
            }
            Action::Up => {
                info!("wifi: connected, waiting for DHCP");
                post(format_args!("dhcp: waiting"));
            }
            Action::Lost => {
                // Connections may survive a short outage; the address and the stack's
                // keep-alive decide what cannot.
                warn!("wifi: link lost");
                post(format_args!("wifi: link lost"));
            }
            Action::Wait => match station.next_attempt() {
                Some(at) => Timer::at(embassy_instant(at)).await,
                None => {
                    let check = Timer::after(embassy_duration(LINK_CHECK));
                    select(wifi.wait_for_disconnect_async(), check).await;
                }
            },
        }
    }
}

/// Posts a message of the link task for the screen.
fn post(message: core::fmt::Arguments<'_>) {
    let mut text = Status::new();
    let _ = text.write_fmt(message);
    LINK.signal(text);
}

/// The station with its network, ready to [`run`](AsyncStation::run) an echo role.
pub struct AsyncStation<const P: usize> {
    display: Display,
    stack: Stack<'static>,
    tcp: Tcp<'static, P>,
}

impl<const P: usize> AsyncStation<P> {
    /// The network stack.
    pub fn stack(&self) -> Stack<'static> {
        self.stack
    }

    /// Runs `role` on the network forever, showing `screen`: the role loop and the display
    /// loop (see the module docs).
    pub async fn run<L: Layout, R: AsyncRole<Tcp<'static, P>, Error = TcpError>>(
        self,
        screen: Screen<L>,
        mut role: R,
    ) -> ! {
        const {
            assert!(
                P > R::CONNECTIONS,
                "the pool needs a socket for each of the role's, and a spare for closing ones"
            )
        };
        let AsyncStation {
            mut display,
            stack,
            tcp,
        } = self;
        let screen = SharedScreen::new(screen);
        match select(
            serve(stack, &tcp, &mut role, &screen),
            draw(&mut display, &screen),
        )
        .await
        {
            Either::First(never) | Either::Second(never) => never,
        }
    }
}

/// The screen of [`AsyncStation::run`]'s two loops: the role's events and the board's
/// messages change it, the display loop draws it. Borrowed between awaits only.
struct SharedScreen<L> {
    screen: RefCell<Screen<L>>,
    /// Wakes the display loop.
    changed: Signal<NoopRawMutex, ()>,
}

impl<L: Layout> SharedScreen<L> {
    fn new(screen: Screen<L>) -> Self {
        SharedScreen {
            screen: RefCell::new(screen),
            changed: Signal::new(),
        }
    }

    /// Runs `f` on the screen, after the link task's latest message.
    fn with<T>(&self, f: impl FnOnce(&mut Screen<L>) -> T) -> T {
        let mut screen = self.screen.borrow_mut();
        if let Some(message) = LINK.try_take() {
            screen.set_status(message.as_str());
        }
        f(&mut screen)
    }

    /// Changes the screen with `f` and wakes the display loop.
    fn change(&self, f: impl FnOnce(&mut Screen<L>)) {
        self.with(f);
        self.changed.signal(());
    }
}

/// The role loop: waits for an address, runs the role until DHCP gives a different one, runs
/// it again. A role that ends by itself (a client without reconnection) stays finished until
/// the address changes.
async fn serve<L, R, const P: usize>(
    stack: Stack<'_>,
    tcp: &Tcp<'static, P>,
    role: &mut R,
    screen: &SharedScreen<L>,
) -> !
where
    L: Layout,
    R: AsyncRole<Tcp<'static, P>, Error = TcpError>,
{
    let mut watch = AddressWatch::new();
    loop {
        // The first address; after a restart, the new one is already known.
        while watch.current().is_none() {
            address_change(stack, None).await;
            note_address(stack, &mut watch, screen);
        }
        let moved = Cell::new(false);
        let mut stop = pin!(async {
            loop {
                address_change(stack, watch.current()).await;
                if let AddressChange::Moved(_) = note_address(stack, &mut watch, screen) {
                    moved.set(true);
                    return;
                }
            }
        });
        let ended = role
            .run_until(tcp, &Clock, stop.as_mut(), |event| {
                screen.change(|screen| show(screen, &event))
            })
            .await;
        if !moved.get() {
            // Its screen shows why it ended.
            if let Err(error) = ended {
                warn!("echo: {}", error);
            }
            stop.await;
        }
    }
}

/// Takes the interface's address; logs and shows what changed.
fn note_address<L: Layout>(
    stack: Stack<'_>,
    watch: &mut AddressWatch,
    screen: &SharedScreen<L>,
) -> AddressChange {
    let change = watch.update(ipv4(stack));
    if change != AddressChange::Same {
        screen.change(|screen| report_address(change, screen));
    }
    change
}

fn ipv4(stack: Stack<'_>) -> Option<Ipv4Addr> {
    stack.config_v4().map(|config| config.address.address())
}

/// Completes when the interface's IPv4 address is not `known`, or may not be any more.
///
/// embassy-net wakes the one task waiting on its state whenever it applies a configuration (a
/// lease, a new lease, a lost one, the link going down), and waiting for the configuration to
/// go down registers for that. The role loop must be the only task waiting on the stack's
/// state: the link task watches the radio's events instead.
async fn address_change(stack: Stack<'_>, known: Option<Ipv4Addr>) {
    if known.is_none() {
        return stack.wait_config_up().await;
    }
    let mut down = pin!(stack.wait_config_down());
    poll_fn(|cx| match ipv4(stack) == known {
        true => down.as_mut().poll(cx),
        false => Poll::Ready(()),
    })
    .await
}

/// The display loop: one page to the panel per turn, yielding between pages so the echo and
/// the network run meanwhile; a new picture at most every [`FRAME_INTERVAL`]; sleeps until the
/// screen changes (or the failing panel's next retry).
async fn draw<L: Layout>(display: &mut Display, screen: &SharedScreen<L>) -> ! {
    loop {
        let now = Clock.now();
        if screen.with(|screen| display.show(screen, now)) {
            yield_now().await;
            continue;
        }
        let pause = match (
            display.is_working(),
            screen.with(|screen| screen.is_dirty()),
        ) {
            (false, _) => Some(RETRY_INTERVAL),
            // A change waiting for its frame time.
            (true, true) => Some(FRAME_INTERVAL),
            (true, false) => None,
        };
        let timer = async {
            match pause {
                Some(pause) => Timer::after(embassy_duration(pause)).await,
                None => core::future::pending().await,
            }
        };
        if let Either3::Second(message) = select3(screen.changed.wait(), LINK.wait(), timer).await {
            screen.with(|screen| screen.set_status(message.as_str()));
        }
    }
}

pub(crate) fn embassy_duration(duration: Duration) -> embassy_time::Duration {
    embassy_time::Duration::from_micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
}

fn embassy_instant(at: Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(at.as_micros())
}
