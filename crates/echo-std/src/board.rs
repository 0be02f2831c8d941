//! [`Board`]: the host as the tutorial's board: its network ([`StdStack`] or [`AsyncStack`]),
//! its clock and its OLED ([`Display`]), and `run`, the one loop that runs an echo role on it,
//! for each engine.

mod asynch;

use std::fmt;
use std::future::poll_fn;
use std::io::{self, IsTerminal};
use std::net::{AddrParseError, IpAddr, Ipv4Addr, SocketAddr};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use echo::{Event, Layout, Role, Screen, Stats, DEFAULT_PORT};

use crate::display::{
    FrameBuffer, PngDisplay, RateLimit, TerminalDisplay, TerminalLog, DEFAULT_FRAME_INTERVAL,
};
use crate::{AsyncStack, Error, Notifier, StdClock, StdStack};

pub use asynch::ASYNC_MAX_CLIENTS;

/// Where the OLED goes, as the `--display` option spells it: `auto`, `terminal`, `none` or
/// `png:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisplayMode {
    /// The terminal when stderr is one, else nothing.
    Auto,
    /// Half blocks on stderr.
    Terminal,
    /// No display.
    None,
    /// A PNG file, rewritten when the picture changes.
    Png(PathBuf),
}

impl FromStr for DisplayMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DisplayMode::Auto),
            "terminal" => Ok(DisplayMode::Terminal),
            "none" => Ok(DisplayMode::None),
            _ => match s.strip_prefix("png:") {
                Some(path) if !path.is_empty() => Ok(DisplayMode::Png(path.into())),
                _ => Err(format!(
                    "unknown display {s:?}: expected auto, terminal, none or png:PATH"
                )),
            },
        }
    }
}

/// The environment variable the examples take their display from, spelled as `--display`:
/// `ECHO_DISPLAY=png:oled.png cargo run --example tcp_server`.
pub const DISPLAY_VARIABLE: &str = "ECHO_DISPLAY";

/// The server the example clients connect to, from the program's first argument (see
/// [`server_address`]).
pub fn server_from_args() -> Result<SocketAddr, AddrParseError> {
    server_address(std::env::args().nth(1).as_deref())
}

/// `IP` (on the tutorial's port 5001) or `IP:PORT`; `127.0.0.1:5001` for `None`.
pub fn server_address(text: Option<&str>) -> Result<SocketAddr, AddrParseError> {
    match text {
        Some(address) => match address.parse::<IpAddr>() {
            Ok(ip) => Ok(SocketAddr::new(ip, DEFAULT_PORT)),
            Err(_) => address.parse(),
        },
        None => Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DEFAULT_PORT)),
    }
}

impl DisplayMode {
    /// The mode [`DISPLAY_VARIABLE`] names; [`DisplayMode::Auto`] when it is not set.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(DISPLAY_VARIABLE) {
            Ok(mode) => mode.parse().map_err(|e| format!("{DISPLAY_VARIABLE}: {e}")),
            Err(_) => Ok(DisplayMode::Auto),
        }
    }

    /// The display this mode stands for on this process (`Auto` looks at stderr).
    pub fn open(&self) -> Display {
        match self {
            DisplayMode::Auto if io::stderr().is_terminal() => {
                Display::Terminal(TerminalDisplay::new(io::stderr()))
            }
            DisplayMode::Auto | DisplayMode::None => Display::None,
            DisplayMode::Terminal => Display::Terminal(TerminalDisplay::new(io::stderr())),
            DisplayMode::Png(path) => Display::Png(PngDisplay::new(path.clone())),
        }
    }
}

/// The board's OLED on a PC.
#[derive(Debug)]
pub enum Display {
    /// No display: the screen is never even drawn.
    None,
    /// The terminal ([`TerminalDisplay`]), with a one-line summary under the picture.
    Terminal(TerminalDisplay),
    /// A PNG file ([`PngDisplay`]).
    Png(PngDisplay),
}

impl Display {
    /// For a terminal display, the writer that logs must use so that they scroll above the
    /// picture.
    pub fn log(&self) -> Option<TerminalLog> {
        match self {
            Display::Terminal(terminal) => Some(terminal.log()),
            Display::None | Display::Png(_) => None,
        }
    }
}

/// The host board: network, clock and display, and `run`, the loop that runs an echo role
/// with its screen, on either engine: the non-blocking roles on a [`StdStack`]
/// ([`Board::run`]), the async roles on an [`AsyncStack`] ([`Board<AsyncStack>::run`], and
/// [`Board::serve`] for a server whose client count is chosen at run time).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use echo::{EchoServer, Screen, ServerConfig, Slot};
/// use echo_std::{Board, DisplayMode, StdStack};
///
/// let mut board = Board::new(StdStack::new()?, DisplayMode::Auto.open());
/// let mut slots = [const { Slot::new() }; 3];
/// let mut buffer = [0; 3 * 1024];
/// let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
/// board.run(&mut server, &mut Screen::server(), |_event| std::ops::ControlFlow::Continue(()))?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Board<S = StdStack> {
    stack: S,
    oled: Oled,
    clock: StdClock,
    stop: Arc<StopSignal>,
}

/// The board's OLED as the loops show it: the display, the picture, and the pace.
#[derive(Debug)]
struct Oled {
    display: Display,
    frame: FrameBuffer,
    limit: RateLimit,
    /// When a picture held back by the rate limit is due.
    redraw_at: Option<Instant>,
}

/// Stops a board's `run` from another thread (a signal handler's, say).
#[derive(Clone, Debug)]
pub struct Stopper {
    signal: Arc<StopSignal>,
    /// The non-blocking loop's wake-up; `None` for the async run, woken through its waker.
    notifier: Option<Notifier>,
}

impl Stopper {
    /// Makes the loop close everything and return, at once if it is waiting.
    ///
    /// For the non-blocking loop this stores an atomic and notifies the stack's poller. The
    /// async run is woken through its executor's waker, behind a lock: call it from a thread
    /// (as `echo-std`'s signal thread does), not from inside a signal handler
    /// ([`is_signal_safe`](Self::is_signal_safe)).
    pub fn stop(&self) {
        match &self.notifier {
            Some(notifier) => {
                self.signal.stopped.store(true, Ordering::SeqCst);
                // A failed wake-up only delays the stop until the loop's next turn.
                let _ = notifier.notify();
            }
            None => self.signal.stop(),
        }
    }

    /// Whether [`stop`](Self::stop) may be called from inside a signal handler: true for the
    /// non-blocking loop's stopper, false for the async run's.
    pub fn is_signal_safe(&self) -> bool {
        self.notifier.is_some()
    }
}

/// The stop a [`Stopper`] sends, and the waker of the async run's stop future.
#[derive(Debug, Default)]
struct StopSignal {
    stopped: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl StopSignal {
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker().as_ref() {
            waker.wake_by_ref();
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Wakes `waker` on [`stop`](Self::stop) (instead of the one set before).
    fn wake(&self, waker: &Waker) {
        let mut slot = self.waker();
        if !slot.as_ref().is_some_and(|set| set.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Completes once stopped.
    async fn stopped(&self) {
        poll_fn(|cx| {
            self.wake(cx.waker());
            match self.is_stopped() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await
    }

    fn waker(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        // A panic while the lock was held left nothing half-changed: an `Option` was replaced.
        self.waker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a board's `run` returned early.
#[derive(Debug)]
pub enum RunError {
    /// The role gave up: the client's last allowed connection attempt failed.
    Role(echo::Error<Error>),
    /// The board failed: waiting on the network, or showing the display.
    Board(Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Role(e) => e.fmt(f),
            RunError::Board(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {}

impl<S> Board<S> {
    /// A board with this network stack ([`StdStack`] or [`AsyncStack`]) and display.
    pub fn new(stack: S, display: Display) -> Self {
        Self {
            stack,
            oled: Oled {
                display,
                frame: FrameBuffer::new(),
                limit: RateLimit::new(DEFAULT_FRAME_INTERVAL),
                redraw_at: None,
            },
            clock: StdClock::new(),
            stop: Arc::new(StopSignal::default()),
        }
    }

    /// Redraws the display at most once per `interval` (default
    /// [`DEFAULT_FRAME_INTERVAL`]: 20 frames a second).
    pub fn with_frame_interval(mut self, interval: Duration) -> Self {
        self.oled.limit = RateLimit::new(interval);
        self
    }

    /// The network stack, for the echo role.
    pub fn stack(&mut self) -> &mut S {
        &mut self.stack
    }

    /// The display.
    pub fn display(&self) -> &Display {
        &self.oled.display
    }

    /// Whether there is a display to show the screen on (else updating it is wasted work).
    pub fn has_display(&self) -> bool {
        self.oled.is_shown()
    }

    /// The board's clock: time since the board was created.
    pub fn clock(&self) -> &StdClock {
        &self.clock
    }

    /// The board's clock for the echo roles: time since the board was created.
    pub fn now(&self) -> echo::Instant {
        self.clock.now()
    }

    /// Converts an instant of the board's clock back to std time.
    ///
    /// # Panics
    /// Past what std time can hold.
    pub fn to_std(&self, instant: echo::Instant) -> Instant {
        self.clock
            .to_std(instant)
            .expect("an instant std time can hold")
    }
}

impl Board<StdStack> {
    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            signal: Arc::clone(&self.stop),
            notifier: Some(self.stack.notifier()),
        }
    }

    /// Runs `role` until it is finished, `on_event` breaks, or the [`Stopper`] stops it; then
    /// shuts it down (closing every connection) and shows the last picture.
    ///
    /// Each turn: poll the role, hand each event to `on_event` and to `screen`, show what
    /// changed on the display (at most [`DEFAULT_FRAME_INTERVAL`] apart, never waiting for
    /// it), and when nothing moved, sleep until the network wakes the board or the role's
    /// next deadline. With no display the screen is not even updated.
    ///
    /// Returns [`RunError::Role`] when the role gave up (after showing it), and
    /// [`RunError::Board`] when waiting or drawing failed.
    pub fn run<R, L>(
        &mut self,
        role: &mut R,
        screen: &mut Screen<L>,
        mut on_event: impl FnMut(&Event<'_, Error>) -> ControlFlow<()>,
    ) -> Result<(), RunError>
    where
        R: Role<StdStack>,
        L: Layout,
    {
        let shows_screen = self.has_display();
        let mut outcome = Ok(());
        while !role.is_finished() && !self.stop.is_stopped() {
            let now = self.now();
            let mut flow = ControlFlow::Continue(());
            let polled = role.poll(&mut self.stack, now, |event| {
                if on_event(&event).is_break() {
                    flow = ControlFlow::Break(());
                }
                // A screen nobody sees is not kept up to date: even bounded, its update costs
                // a share of the echo itself at loopback speed (`cargo bench --bench core`).
                if shows_screen {
                    screen.update(&event);
                }
            });
            let progress = match polled {
                Ok(progress) => progress,
                Err(e) => {
                    outcome = Err(RunError::Role(e));
                    break;
                }
            };
            if flow.is_break() {
                break;
            }
            // The counters (a look at every slot) only when a summary is drawn.
            self.oled
                .show(screen, || summary(role.stats()))
                .map_err(|e| RunError::Board(Error::new("show the display", e)))?;
            if !progress {
                self.wait_until(role.next_deadline())
                    .map_err(RunError::Board)?;
            }
        }
        role.shutdown(&mut self.stack, |event| {
            let _ = on_event(&event);
            screen.update(&event);
        });
        let stats = role.stats();
        self.oled
            .finish(screen, || summary(stats))
            .map_err(|e| RunError::Board(Error::new("show the display", e)))?;
        outcome
    }

    /// Sleeps until the network has something for the role, a held-back picture is due, or
    /// the board's clock reads `deadline`. Call it when a `poll` made no progress.
    fn wait_until(&mut self, deadline: Option<echo::Instant>) -> Result<(), Error> {
        let due = match (deadline.map(|d| self.to_std(d)), self.oled.redraw_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = due.map(|due| due.saturating_duration_since(Instant::now()));
        self.stack.wait(timeout).map(drop)
    }
}

impl Oled {
    fn is_shown(&self) -> bool {
        !matches!(self.display, Display::None)
    }

    /// Shows what changed on `screen` (and the `summary` line, in a terminal) if the rate
    /// limit allows a redraw now; otherwise remembers to try again (`redraw_at`), when the
    /// loop wakes up for it. `summary` is only called when drawing. Never waits.
    fn show<L: Layout>(
        &mut self,
        screen: &mut Screen<L>,
        summary: impl FnOnce() -> String,
    ) -> io::Result<()> {
        if !self.is_shown() {
            return Ok(());
        }
        let now = Instant::now();
        if !self.limit.allows(now) {
            self.redraw_at = self.limit.next_allowed();
            return Ok(());
        }
        self.redraw_at = None;
        if self.draw(screen, summary)? {
            self.limit.record(now);
        }
        Ok(())
    }

    /// Shows the last picture whatever the rate limit (before exiting).
    fn finish<L: Layout>(
        &mut self,
        screen: &mut Screen<L>,
        summary: impl FnOnce() -> String,
    ) -> io::Result<()> {
        self.redraw_at = None;
        self.draw(screen, summary).map(drop)
    }

    fn draw<L: Layout>(
        &mut self,
        screen: &mut Screen<L>,
        summary: impl FnOnce() -> String,
    ) -> io::Result<bool> {
        // The frame buffer cannot fail.
        let _ = screen.draw(&mut self.frame);
        match &mut self.display {
            Display::None => Ok(false),
            Display::Terminal(terminal) => terminal.show(&self.frame, &summary()),
            Display::Png(png) => png.show(&self.frame),
        }
    }
}

/// The live summary under the terminal picture: clients, bytes in and out.
pub fn summary(stats: Stats) -> String {
    format!(
        "clients {}/{}  in {}  out {}",
        stats.open,
        stats.capacity,
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
pub(super) mod tests {
    use super::*;
    use echo::{ClientConfig, EchoClient, EchoServer, ServerConfig, Slot};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread;

    #[test]
    fn parses_the_display_option() {
        assert_eq!("auto".parse(), Ok(DisplayMode::Auto));
        assert_eq!("terminal".parse(), Ok(DisplayMode::Terminal));
        assert_eq!("none".parse(), Ok(DisplayMode::None));
        assert_eq!(
            "png:/tmp/oled.png".parse(),
            Ok(DisplayMode::Png("/tmp/oled.png".into()))
        );
        assert!("png:".parse::<DisplayMode>().is_err());
        assert!("oled"
            .parse::<DisplayMode>()
            .unwrap_err()
            .contains("png:PATH"));
    }

    #[test]
    fn a_server_address_is_an_ip_on_port_5001_or_an_ip_and_port() {
        let local = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(server_address(None), Ok(local(5001)));
        assert_eq!(server_address(Some("127.0.0.1")), Ok(local(5001)));
        assert_eq!(server_address(Some("127.0.0.1:6000")), Ok(local(6000)));
        assert_eq!(
            server_address(Some("::1")).map(|a| a.port()),
            Ok(DEFAULT_PORT)
        );
        assert!(server_address(Some("board.local")).is_err());
    }

    #[test]
    fn summary_counts_clients_and_bytes() {
        let mut stats = Stats::new(3);
        stats.open = 2;
        stats.bytes_received = 1536;
        stats.bytes_sent = 3 << 20;
        assert_eq!(summary(stats), "clients 2/3  in 1.5 KiB  out 3.0 MiB");
        assert_eq!(bytes(1023), "1023 B");
    }

    #[test]
    fn board_time_runs_from_its_creation() {
        let board = Board::new(StdStack::new().unwrap(), Display::None);
        let now = board.now();
        assert!(now.as_millis() < 1000);
        let later = now + Duration::from_millis(1500);
        assert_eq!(
            board.to_std(later) - board.to_std(now),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn png_board_draws_the_screen_into_the_file() {
        let path = std::env::temp_dir().join(format!("echo-std-board-{}.png", std::process::id()));
        let mut board = Board::new(
            StdStack::new().unwrap(),
            DisplayMode::Png(path.clone()).open(),
        );
        let mut screen = Screen::server();
        board.oled.show(&mut screen, String::new).unwrap();
        assert!(!screen.is_dirty(), "drawn");
        let written = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut reader = png::Decoder::new(io::Cursor::new(written))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        assert!(pixels.contains(&0xff), "the server screen shows some text");
    }

    fn loopback_board() -> Board {
        let stack = StdStack::new()
            .unwrap()
            .with_bind_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
        Board::new(stack, Display::None)
    }

    /// A client that pings the server at the address sent on the channel once it listens;
    /// what it got back before the close, and after.
    pub(super) fn pinging_client() -> (mpsc::Sender<SocketAddr>, thread::JoinHandle<Vec<u8>>) {
        use std::io::{Read, Write};
        let (address, listening) = mpsc::channel();
        let client = thread::spawn(move || {
            let address: SocketAddr = listening.recv().unwrap();
            let mut stream = TcpStream::connect(address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(b"ping").unwrap();
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            received
        });
        (address, client)
    }

    /// Runs a server on `board` with `run` until its first echo: each event's name is added to
    /// `seen`, and the server stops (it closes the connection) once the echo went out.
    pub(super) fn serve_one_ping(
        run: impl FnOnce(&mut dyn FnMut(&Event<'_, Error>) -> ControlFlow<()>) -> Result<(), RunError>,
    ) {
        let (address, client) = pinging_client();
        let mut seen = Vec::new();
        run(&mut |event| {
            seen.push(
                format!("{event:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_string(),
            );
            match event {
                Event::Listening { local } => address.send(*local).unwrap(),
                // Stop once the echo went out: the client has it, then sees the close.
                Event::Received { .. } => return ControlFlow::Break(()),
                _ => {}
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(client.join().unwrap(), b"ping", "the echo, then the close");
        assert_eq!(seen, ["Listening", "Opened", "Received", "Closed"]);
    }

    #[test]
    fn run_echoes_until_told_to_stop_then_closes_every_connection() {
        let mut board = loopback_board();
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0; 2 * 64];
        let config = ServerConfig::new().with_port(0);
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        serve_one_ping(|on_event| board.run(&mut server, &mut Screen::server(), on_event));
        assert!(server.is_finished(), "run shut the server down");
    }

    #[test]
    fn a_stopper_ends_a_waiting_run_from_another_thread() {
        let mut board = loopback_board();
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0; 64];
        let config = ServerConfig::new().with_port(0);
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        stops_when_told(board.stopper(), || {
            board.run(&mut server, &mut Screen::server(), |_| {
                ControlFlow::Continue(())
            })
        });
        assert!(server.is_finished());
    }

    /// Runs `run`, a run that would wait forever, while another thread stops it through
    /// `stopper` after 200 ms: it must return then, and no later than 5 s.
    pub(super) fn stops_when_told(stopper: Stopper, run: impl FnOnce() -> Result<(), RunError>) {
        let stopping = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            stopper.stop();
        });
        let started = Instant::now();
        run().unwrap();
        stopping.join().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// An address where nobody listens.
    pub(super) fn closed_port() -> SocketAddr {
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        closed.local_addr().unwrap()
    }

    /// What a client's run must return when it cannot connect to `remote`.
    pub(super) fn assert_gave_up(outcome: Result<(), RunError>, remote: SocketAddr) {
        let error = outcome.unwrap_err();
        assert!(
            matches!(error, RunError::Role(echo::Error::Connect { .. })),
            "{error:?}"
        );
        assert!(error.to_string().contains(&remote.to_string()), "{error}");
    }

    #[test]
    fn a_client_that_gives_up_is_a_role_error() {
        let mut board = loopback_board();
        let remote = closed_port();
        let mut buffer = [0; 64];
        let mut client = EchoClient::new(ClientConfig::new(remote), &mut buffer);
        let outcome = board.run(&mut client, &mut Screen::client(), |_| {
            ControlFlow::Continue(())
        });
        assert_gave_up(outcome, remote);
    }
}
