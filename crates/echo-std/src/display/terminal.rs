//! The OLED in a terminal: two pixel rows per text line with half blocks, redrawn in place.

use super::{FrameBuffer, HEIGHT, WIDTH};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// The terminal both the picture and the logs are written to, and how many lines of the
/// picture are on it now (0 once a log line has erased it).
struct Terminal {
    out: Box<dyn Write + Send>,
    lines_on_screen: usize,
}

impl Terminal {
    fn erase_picture(&mut self) -> io::Result<()> {
        let lines = self.lines_on_screen;
        if lines > 0 {
            // To the start of the picture's first line, then clear to the end of the screen.
            write!(self.out, "\x1b[{lines}F\x1b[J")?;
            self.lines_on_screen = 0;
        }
        Ok(())
    }
}

fn lock(terminal: &Mutex<Terminal>) -> MutexGuard<'_, Terminal> {
    // A panic elsewhere while writing leaves nothing half-updated worth refusing.
    terminal
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Shows the [`FrameBuffer`] in a terminal with `▀▄█` (64 pixel rows on 32 lines of 128
/// columns) and a one-line summary below, redrawn in place with ANSI cursor movement, only
/// when something changed (how often to try is the caller's choice, see
/// [`RateLimit`](super::RateLimit)).
///
/// Logs written through [`TerminalLog`] scroll above the picture: each log line first
/// erases it, and the next [`show`](Self::show) draws it again below the log.
pub struct TerminalDisplay {
    terminal: Arc<Mutex<Terminal>>,
    shown: Option<(FrameBuffer, String)>,
}

impl TerminalDisplay {
    /// A display writing to `out` (normally stderr).
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self {
            terminal: Arc::new(Mutex::new(Terminal {
                out: Box::new(out),
                lines_on_screen: 0,
            })),
            shown: None,
        }
    }

    /// A writer for logs that keeps them from mixing with the picture (give it to the
    /// logger as its target).
    pub fn log(&self) -> TerminalLog {
        TerminalLog {
            terminal: Arc::clone(&self.terminal),
        }
    }

    /// Draws `frame` and `status` if they differ from what is on the terminal; returns
    /// whether it drew.
    pub fn show(&mut self, frame: &FrameBuffer, status: &str) -> io::Result<bool> {
        if !self.differs(frame, status) {
            return Ok(false);
        }
        self.redraw(frame, status)?;
        Ok(true)
    }

    fn differs(&self, frame: &FrameBuffer, status: &str) -> bool {
        let on_screen = lock(&self.terminal).lines_on_screen > 0;
        !on_screen
            || self
                .shown
                .as_ref()
                .is_none_or(|(shown, shown_status)| shown != frame || shown_status != status)
    }

    fn redraw(&mut self, frame: &FrameBuffer, status: &str) -> io::Result<()> {
        let mut text = String::with_capacity((HEIGHT / 2 * (WIDTH * 3 + 4)) as usize + 64);
        for y in (0..HEIGHT).step_by(2) {
            for x in 0..WIDTH {
                text.push(match (frame.is_on(x, y), frame.is_on(x, y + 1)) {
                    (false, false) => ' ',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (true, true) => '█',
                });
            }
            // Clear what a longer line drawn before may have left.
            text.push_str("\x1b[K\n");
        }
        text.push_str(status);
        text.push_str("\x1b[K\n");
        let mut terminal = lock(&self.terminal);
        let lines_on_screen = terminal.lines_on_screen;
        if lines_on_screen > 0 {
            write!(terminal.out, "\x1b[{lines_on_screen}F")?;
        }
        terminal.out.write_all(text.as_bytes())?;
        terminal.out.flush()?;
        terminal.lines_on_screen = (HEIGHT / 2) as usize + 1;
        self.shown = Some((frame.clone(), status.to_owned()));
        Ok(())
    }
}

impl core::fmt::Debug for TerminalDisplay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TerminalDisplay").finish_non_exhaustive()
    }
}

/// Log output that shares the terminal with a [`TerminalDisplay`]: it erases the picture
/// before writing, so that logs scroll above it and it is drawn again below them.
pub struct TerminalLog {
    terminal: Arc<Mutex<Terminal>>,
}

impl Write for TerminalLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut terminal = lock(&self.terminal);
        terminal.erase_picture()?;
        terminal.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        lock(&self.terminal).out.flush()
    }
}

impl core::fmt::Debug for TerminalLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TerminalLog").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use embedded_graphics::pixelcolor::BinaryColor;
    use embedded_graphics::prelude::{Drawable, Pixel, Point};

    use super::*;

    /// What the display wrote, readable while the display holds the writer.
    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Screen {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame_with(pixels: &[(i32, i32)]) -> FrameBuffer {
        let mut frame = FrameBuffer::new();
        for &(x, y) in pixels {
            Pixel(Point::new(x, y), BinaryColor::On)
                .draw(&mut frame)
                .unwrap();
        }
        frame
    }

    #[test]
    fn draws_two_pixel_rows_per_line_with_half_blocks() {
        let screen = Screen::default();
        let mut display = TerminalDisplay::new(screen.clone());
        let frame = frame_with(&[(0, 0), (1, 1), (2, 0), (2, 1), (127, 63)]);
        display.show(&frame, "clients 0").unwrap();
        let text = screen.take();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(
            lines.len(),
            34,
            "32 picture lines, the summary, and the end"
        );
        assert!(lines[0].starts_with("▀▄█ "), "{:?}", lines[0]);
        assert_eq!(lines[0].trim_end_matches("\x1b[K").chars().count(), 128);
        assert!(lines[31].ends_with("▄\x1b[K"), "{:?}", lines[31]);
        assert_eq!(lines[32], "clients 0\x1b[K");
    }

    #[test]
    fn redraws_in_place_and_only_when_something_changed() {
        let screen = Screen::default();
        let mut display = TerminalDisplay::new(screen.clone());
        let frame = frame_with(&[(5, 5)]);
        assert!(display.show(&frame, "a").unwrap());
        assert!(!screen.take().contains("\x1b[33F"));
        assert!(!display.show(&frame, "a").unwrap());
        assert_eq!(screen.take(), "", "nothing changed");
        assert!(display.show(&frame, "b").unwrap());
        assert!(
            screen.take().starts_with("\x1b[33F"),
            "back up over the picture"
        );
    }

    #[test]
    fn logs_scroll_above_the_picture() {
        let screen = Screen::default();
        let mut display = TerminalDisplay::new(screen.clone());
        let mut log = display.log();
        let frame = frame_with(&[(0, 0)]);
        display.show(&frame, "s").unwrap();
        screen.take();
        log.write_all(b"INFO client connected\n").unwrap();
        assert_eq!(screen.take(), "\x1b[33F\x1b[JINFO client connected\n");
        log.write_all(b"INFO again\n").unwrap();
        assert_eq!(screen.take(), "INFO again\n", "the picture is already gone");
        display.show(&frame, "s").unwrap();
        let redrawn = screen.take();
        assert!(redrawn.starts_with('▀'), "drawn anew below the log");
    }
}
