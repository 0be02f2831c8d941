//! [`Board`]: the host as the tutorial's board: its network ([`StdStack`]), its clock and its
//! OLED ([`Display`]), and [`Board::run`], the one loop that runs an echo role on it.

use std::fmt;
use std::io::{self, IsTerminal};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo::{Event, Layout, Role, Screen, Stats};

use crate::display::{
    FrameBuffer, PngDisplay, RateLimit, TerminalDisplay, TerminalLog, DEFAULT_FRAME_INTERVAL,
};
use crate::{Error, Notifier, StdStack};

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

/// The host board: network, clock and display, and [`run`](Self::run), the loop that runs an
/// echo role with its screen.
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
pub struct Board {
    stack: StdStack,
    display: Display,
    frame: FrameBuffer,
    origin: Instant,
    limit: RateLimit,
    /// When a picture held back by the rate limit is due.
    redraw_at: Option<Instant>,
    stop: Arc<AtomicBool>,
}

/// Stops a [`Board::run`] from another thread (a signal handler's, say).
#[derive(Clone, Debug)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    notifier: Notifier,
}

impl Stopper {
    /// Makes the loop close everything and return, at once if it is waiting.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // A failed wake-up only delays the stop until the loop's next turn.
        let _ = self.notifier.notify();
    }
}

/// Why [`Board::run`] returned early.
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

impl Board {
    /// A board with this network stack and display.
    pub fn new(stack: StdStack, display: Display) -> Self {
        Self {
            stack,
            display,
            frame: FrameBuffer::new(),
            origin: Instant::now(),
            limit: RateLimit::new(DEFAULT_FRAME_INTERVAL),
            redraw_at: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Redraws the display at most once per `interval` (default
    /// [`DEFAULT_FRAME_INTERVAL`]: 20 frames a second).
    pub fn with_frame_interval(mut self, interval: Duration) -> Self {
        self.limit = RateLimit::new(interval);
        self
    }

    /// The network stack, for the echo role's `poll`.
    pub fn stack(&mut self) -> &mut StdStack {
        &mut self.stack
    }

    /// The display.
    pub fn display(&self) -> &Display {
        &self.display
    }

    /// Whether there is a display to show the screen on (else updating it is wasted work).
    pub fn has_display(&self) -> bool {
        !matches!(self.display, Display::None)
    }

    /// The board's clock for the echo roles: time since the board was created.
    pub fn now(&self) -> echo::Instant {
        self.to_echo(Instant::now())
    }

    /// Converts an instant of the board's clock back to std time.
    pub fn to_std(&self, instant: echo::Instant) -> Instant {
        self.origin + Duration::from_micros(instant.as_micros())
    }

    fn to_echo(&self, instant: Instant) -> echo::Instant {
        let micros = instant.saturating_duration_since(self.origin).as_micros();
        echo::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            stop: Arc::clone(&self.stop),
            notifier: self.stack.notifier(),
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
        while !role.is_finished() && !self.stop.load(Ordering::SeqCst) {
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
            self.show(screen, || summary(role.stats()))
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
        self.finish(screen, || summary(stats))
            .map_err(|e| RunError::Board(Error::new("show the display", e)))?;
        outcome
    }

    /// Shows what changed on `screen` (and the `summary` line, in a terminal) if the rate
    /// limit allows a redraw now; otherwise remembers to try again, and
    /// [`wait_until`](Self::wait_until) wakes up for it. `summary` is only called when drawing. Never waits.
    fn show<L: Layout>(
        &mut self,
        screen: &mut Screen<L>,
        summary: impl FnOnce() -> String,
    ) -> io::Result<()> {
        if matches!(self.display, Display::None) {
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

    /// Sleeps until the network has something for the role, a held-back picture is due, or
    /// the board's clock reads `deadline`. Call it when a `poll` made no progress.
    fn wait_until(&mut self, deadline: Option<echo::Instant>) -> Result<(), Error> {
        let due = match (deadline.map(|d| self.to_std(d)), self.redraw_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = due.map(|due| due.saturating_duration_since(Instant::now()));
        self.stack.wait(timeout).map(drop)
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
mod tests {
    use super::*;
    use echo::{ClientConfig, EchoClient, EchoServer, ServerConfig, Slot};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
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
        board.show(&mut screen, String::new).unwrap();
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

    #[test]
    fn run_echoes_until_told_to_stop_then_closes_every_connection() {
        use std::io::{Read, Write};
        let mut board = loopback_board();
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0; 2 * 64];
        let config = ServerConfig::new().with_port(0);
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let (address, client) = mpsc::channel();
        let client = thread::spawn(move || {
            let address: SocketAddr = client.recv().unwrap();
            let mut stream = TcpStream::connect(address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(b"ping").unwrap();
            let mut echoed = [0; 4];
            stream.read_exact(&mut echoed).unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).unwrap();
            (echoed, rest)
        });
        let mut seen = Vec::new();
        board
            .run(&mut server, &mut Screen::server(), |event| {
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
        let (echoed, rest) = client.join().unwrap();
        assert_eq!(&echoed, b"ping");
        assert!(rest.is_empty(), "closed after the echo");
        assert_eq!(seen, ["Listening", "Opened", "Received", "Closed"]);
        assert!(server.is_finished(), "run shut the server down");
    }

    #[test]
    fn a_stopper_ends_a_waiting_run_from_another_thread() {
        let mut board = loopback_board();
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0; 64];
        let config = ServerConfig::new().with_port(0);
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let stopper = board.stopper();
        let stopping = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            stopper.stop();
        });
        let started = Instant::now();
        board
            .run(&mut server, &mut Screen::server(), |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        stopping.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(server.is_finished());
    }

    #[test]
    fn a_client_that_gives_up_is_a_role_error() {
        let mut board = loopback_board();
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let remote = closed.local_addr().unwrap();
        drop(closed);
        let mut buffer = [0; 64];
        let mut client = EchoClient::new(ClientConfig::new(remote), &mut buffer);
        let error = board
            .run(&mut client, &mut Screen::client(), |_| {
                ControlFlow::Continue(())
            })
            .unwrap_err();
        assert!(
            matches!(error, RunError::Role(echo::Error::Connect { .. })),
            "{error:?}"
        );
        assert!(error.to_string().contains(&remote.to_string()), "{error}");
    }
}
