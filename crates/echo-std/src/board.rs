//! [`Board`]: the host as the tutorial's board: its network ([`StdStack`]), its clock and its
//! OLED ([`Display`]), for the loop that polls an echo role.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use echo::Screen;

use crate::display::{
    FrameBuffer, PngDisplay, RateLimit, TerminalDisplay, TerminalLog, DEFAULT_FRAME_INTERVAL,
};
use crate::{Error, StdStack};

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

impl DisplayMode {
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

/// The host board: network, clock and display, and the loop's two moves, [`show`](Self::show)
/// and [`wait`](Self::wait).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use echo::{EchoServer, Screen, ServerConfig, Slot};
/// use echo_std::{Board, DisplayMode, StdStack};
///
/// let mut board = Board::new(StdStack::new()?, DisplayMode::Auto.open());
/// let mut slots = [const { Slot::new() }; 3];
/// let mut buffer = [0; 3 * 1024];
/// let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
/// let mut screen = Screen::server();
/// loop {
///     let now = board.now();
///     let progress = server.poll(board.stack(), now, |event| screen.update(&event))?;
///     board.show(&mut screen, String::new)?;
///     if !progress {
///         board.wait(None)?;
///     }
/// }
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
}

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

    /// Shows what changed on `screen` (and the `summary` line, in a terminal) if the rate
    /// limit allows a redraw now; otherwise remembers to try again, and [`wait`](Self::wait)
    /// wakes up for it. `summary` is only called when drawing. Never waits.
    pub fn show(
        &mut self,
        screen: &mut Screen,
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
    pub fn finish(
        &mut self,
        screen: &mut Screen,
        summary: impl FnOnce() -> String,
    ) -> io::Result<()> {
        self.redraw_at = None;
        self.draw(screen, summary).map(drop)
    }

    fn draw(&mut self, screen: &mut Screen, summary: impl FnOnce() -> String) -> io::Result<bool> {
        // The frame buffer cannot fail.
        let _ = screen.draw(&mut self.frame);
        match &mut self.display {
            Display::None => Ok(false),
            Display::Terminal(terminal) => terminal.show(&self.frame, &summary()),
            Display::Png(png) => png.show(&self.frame),
        }
    }

    /// Sleeps until the network has something for the roles, a held-back picture is due, or
    /// `timeout` passed. Call it when a `poll` made no progress.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        let redraw = self
            .redraw_at
            .map(|due| due.saturating_duration_since(Instant::now()));
        let timeout = match (timeout, redraw) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.stack.wait(timeout).map(drop)
    }

    /// Like [`wait`](Self::wait), until the board's clock reads `deadline` at the latest.
    pub fn wait_until(&mut self, deadline: Option<echo::Instant>) -> Result<(), Error> {
        let timeout = deadline.map(|deadline| {
            self.to_std(deadline)
                .saturating_duration_since(Instant::now())
        });
        self.wait(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let written = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut reader = png::Decoder::new(io::Cursor::new(written))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        assert!(pixels.contains(&0xff), "the server screen shows some text");
    }
}
