//! What goes on which row: the server's screen and the client's screen of the tutorial.

use core::fmt::{self, Write as _};

use super::text::{visible, Line, COLUMNS};
use super::{Rows, ROWS};
use crate::addr::Address;
use crate::event::Event;
use crate::time::millis;

/// The server's row with its received text, at y = 48.
pub const SERVER_TEXT_ROW: usize = 3;

/// Where a [`Screen`](super::Screen) puts what: [`ServerLayout`] or [`ClientLayout`].
///
/// Sealed: the two layouts of the tutorial are the ones there are.
pub trait Layout: sealed::Sealed {}

pub(crate) mod sealed {
    use super::Rows;
    use crate::event::Event;

    pub trait Sealed {
        /// Bytes at the end of a message that can still be on screen (4 per character).
        const VISIBLE_BYTES: usize;

        /// The rows before any event.
        fn start(&mut self, rows: &mut Rows);

        /// Applies an event other than `Received`.
        fn update<E>(&mut self, rows: &mut Rows, event: &Event<'_, E>);

        /// A message begins: its first character replaces the previous message.
        fn clear_text(&mut self, rows: &mut Rows);

        /// One decoded character of a message.
        fn push_text(&mut self, rows: &mut Rows, c: char);

        /// A board message.
        fn set_status(&mut self, rows: &mut Rows, status: &str);
    }
}

/// The tutorial's server screen: row 0 `IP:PORT`, row 1 `accepting.....` or how many clients
/// are served, row 2 the last connection change, row 3 (y = 48) the end of the last text
/// received (only that band is cleared and redrawn per message, like the tutorial's
/// `fill_rect(0,48,128,16,0)`).
///
/// The client count is the server's own (each `Opened` and `Closed` event carries it), so the
/// screen cannot disagree with the server, whatever happens to the listener.
#[derive(Clone, Debug)]
pub struct ServerLayout {
    listening: bool,
    open: usize,
}

impl ServerLayout {
    pub(crate) fn new() -> Self {
        ServerLayout {
            listening: false,
            open: 0,
        }
    }

    fn show_clients(&self, rows: &mut Rows) {
        let line = match (self.open, self.listening) {
            (0, true) => Line::from_fmt(format_args!("accepting.....")),
            (0, false) => Line::from_fmt(format_args!("not listening")),
            (1, _) => Line::from_fmt(format_args!("1 client")),
            (n, _) => Line::from_fmt(format_args!("{n} clients")),
        };
        rows.set(1, line);
    }
}

impl Layout for ServerLayout {}

impl sealed::Sealed for ServerLayout {
    const VISIBLE_BYTES: usize = COLUMNS * 4;

    fn start(&mut self, rows: &mut Rows) {
        rows.set(1, Line::from_fmt(format_args!("starting.....")));
    }

    fn update<E>(&mut self, rows: &mut Rows, event: &Event<'_, E>) {
        match event {
            Event::Listening { local } => {
                self.listening = true;
                rows.set(0, Line::from_fmt(format_args!("{}", Address(*local))));
                self.show_clients(rows);
            }
            Event::ListenFailed { retry_in, .. } => {
                self.listening = false;
                self.show_clients(rows);
                rows.set(
                    2,
                    Line::from_fmt(format_args!("listen: retry {} ms", millis(*retry_in))),
                );
            }
            Event::Opened { peer, open, .. } => {
                self.open = *open;
                self.show_clients(rows);
                rows.set(2, Line::from_fmt(format_args!("+{}", Address(*peer))));
            }
            Event::Closed { conn, reason, open } => {
                self.open = *open;
                self.show_clients(rows);
                rows.set(
                    2,
                    Line::from_fmt(format_args!("-{conn} {}", reason.as_str())),
                );
            }
            Event::Received { .. } | Event::Connecting { .. } | Event::ConnectFailed { .. } => {}
        }
    }

    fn clear_text(&mut self, rows: &mut Rows) {
        rows.lines[SERVER_TEXT_ROW] = Line::EMPTY;
        rows.mark(SERVER_TEXT_ROW);
    }

    fn push_text(&mut self, rows: &mut Rows, c: char) {
        if let Some(c) = visible(c, ' ') {
            rows.lines[SERVER_TEXT_ROW].push_tail(c);
        }
    }

    fn set_status(&mut self, rows: &mut Rows, status: &str) {
        rows.set(1, Line::from_fmt(format_args!("{status}")));
    }
}

/// The tutorial's client screen: the last received text from (0, 0), wrapped to the width and
/// at newlines; when it is longer than the screen, its end is shown (of a message longer than
/// the screen's characters at 4 bytes each, the shown part is wrapped from where it starts).
/// Connection changes show in its place.
#[derive(Clone, Debug)]
pub struct ClientLayout {
    /// The row being written.
    cursor_row: usize,
}

impl ClientLayout {
    pub(crate) fn new() -> Self {
        ClientLayout { cursor_row: 0 }
    }

    fn set_text(&mut self, rows: &mut Rows, text: fmt::Arguments<'_>) {
        self.clear(rows);
        let _ = Appender(self, rows).write_fmt(text);
    }

    fn clear(&mut self, rows: &mut Rows) {
        rows.lines = [Line::EMPTY; ROWS];
        self.cursor_row = 0;
        (0..ROWS).for_each(|row| rows.mark(row));
    }

    /// Wraps at the width and at `\n`; past the last row, the text scrolls up.
    fn push(&mut self, rows: &mut Rows, c: char) {
        let Some(c) = visible(c, '\n') else { return };
        if c != '\n' && rows.lines[self.cursor_row].push(c) {
            rows.mark(self.cursor_row);
            return;
        }
        if self.cursor_row + 1 < ROWS {
            self.cursor_row += 1;
        } else {
            rows.lines.copy_within(1.., 0);
            rows.lines[ROWS - 1] = Line::EMPTY;
            (0..ROWS).for_each(|row| rows.mark(row));
        }
        if c != '\n' {
            rows.lines[self.cursor_row].push(c);
            rows.mark(self.cursor_row);
        }
    }
}

impl Layout for ClientLayout {}

impl sealed::Sealed for ClientLayout {
    const VISIBLE_BYTES: usize = ROWS * COLUMNS * 4;

    fn start(&mut self, _rows: &mut Rows) {}

    fn update<E>(&mut self, rows: &mut Rows, event: &Event<'_, E>) {
        match event {
            Event::Connecting { remote, attempt } => {
                self.set_text(rows, format_args!("connecting to\n{}", Address(*remote)));
                if *attempt > 1 {
                    let _ = write!(Appender(self, rows), "\nattempt {attempt}");
                }
            }
            Event::Opened { peer, .. } => {
                self.set_text(rows, format_args!("connected to\n{}", Address(*peer)))
            }
            Event::ConnectFailed {
                retry_in: Some(retry_in),
                ..
            } => self.set_text(
                rows,
                format_args!("connect failed\nretry in {} ms", millis(*retry_in)),
            ),
            Event::ConnectFailed { retry_in: None, .. } => {
                self.set_text(rows, format_args!("connect failed\ngave up"))
            }
            Event::Closed { reason, .. } => {
                self.set_text(rows, format_args!("disconnected\n{}", reason.as_str()))
            }
            Event::Received { .. } | Event::Listening { .. } | Event::ListenFailed { .. } => {}
        }
    }

    fn clear_text(&mut self, rows: &mut Rows) {
        self.clear(rows);
    }

    fn push_text(&mut self, rows: &mut Rows, c: char) {
        self.push(rows, c);
    }

    fn set_status(&mut self, rows: &mut Rows, status: &str) {
        self.set_text(rows, format_args!("{status}"));
    }
}

/// Writes after what the client's text already holds.
struct Appender<'s>(&'s mut ClientLayout, &'s mut Rows);

impl fmt::Write for Appender<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.chars().for_each(|c| self.0.push(self.1, c));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use crate::testing::{End, MockError, MockStack, Peer};
    use crate::{
        CloseReason, ConnId, EchoServer, Event, Instant, Role, Screen, ServerConfig, Slot, COLUMNS,
        SERVER_TEXT_ROW,
    };
    use std::string::{String, ToString};

    type TestEvent<'a> = Event<'a, ()>;

    fn lines<L: super::Layout>(screen: &Screen<L>) -> [String; super::ROWS] {
        core::array::from_fn(|row| screen.line(row).to_string())
    }

    fn received(conn: u32, bytes: &[u8]) -> Event<'_, ()> {
        Event::Received {
            conn: ConnId(conn),
            bytes,
        }
    }

    #[test]
    fn server_layout_follows_the_tutorial() {
        let mut screen = Screen::server();
        assert_eq!(lines(&screen), ["", "starting.....", "", ""]);
        screen.update(&TestEvent::Listening {
            local: "192.168.4.1:5001".parse().unwrap(),
        });
        assert_eq!(
            lines(&screen),
            ["192.168.4.1:5001", "accepting.....", "", ""]
        );
        screen.update(&TestEvent::Opened {
            conn: ConnId(0),
            peer: "192.168.4.2:50000".parse().unwrap(),
            open: 1,
        });
        screen.update(&received(0, b"hello"));
        assert_eq!(
            lines(&screen),
            [
                "192.168.4.1:5001",
                "1 client",
                "+192.168.4.2:50000",
                "hello"
            ]
        );
        screen.update(&TestEvent::Opened {
            conn: ConnId(1),
            peer: "192.168.4.3:50000".parse().unwrap(),
            open: 2,
        });
        assert_eq!(screen.line(1).to_string(), "2 clients");
        screen.update(&TestEvent::Closed {
            conn: ConnId(0),
            reason: CloseReason::Eof,
            open: 0,
        });
        assert_eq!(screen.line(1).to_string(), "accepting.....");
        assert_eq!(screen.line(2).to_string(), "-#0 eof");
    }

    #[test]
    fn an_accept_failure_while_a_client_is_served_leaves_one_client_on_the_screen() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut screen = Screen::server();
        let mut poll = |stack: &mut MockStack, now, screen: &mut Screen<_>| {
            server
                .poll(stack, now, |event| screen.update(&event))
                .unwrap()
        };
        poll(&mut stack, Instant::ZERO, &mut screen);
        assert_eq!(screen.line(1).to_string(), "1 client");

        stack
            .incoming
            .push_back(Err(MockError::other("listener broke")));
        poll(&mut stack, Instant::ZERO, &mut screen);
        assert_eq!(screen.line(1).to_string(), "1 client");
        assert_eq!(screen.line(2).to_string(), "listen: retry 500 ms");

        poll(&mut stack, Instant::from_millis(500), &mut screen);
        assert_eq!(screen.line(0).to_string(), "10.0.0.1:5001");
        assert_eq!(screen.line(1).to_string(), "1 client", "listening again");
    }

    #[test]
    fn a_server_that_cannot_listen_says_so() {
        let mut screen = Screen::server();
        let error = crate::Error::Bind {
            port: 5001,
            error: (),
        };
        screen.update(&Event::ListenFailed {
            error: &error,
            retry_in: crate::Duration::from_secs(2),
        });
        assert_eq!(
            lines(&screen),
            ["", "not listening", "listen: retry 2000 ms", ""]
        );
    }

    #[test]
    fn long_text_keeps_its_end_on_the_server_row() {
        let mut screen = Screen::server();
        let text = "0123456789abcdefghijklmnopqrstuvwxyz";
        screen.update(&received(0, text.as_bytes()));
        assert_eq!(
            screen.line(SERVER_TEXT_ROW).to_string(),
            &text[text.len() - COLUMNS..]
        );
    }

    #[test]
    fn server_status_takes_the_second_row() {
        let mut screen = Screen::server();
        screen.set_status("wifi: connecting 2");
        assert_eq!(screen.line(1).to_string(), "wifi: connecting 2");
    }

    #[test]
    fn client_text_wraps_from_the_top_left() {
        let mut screen = Screen::client();
        screen.update(&received(
            0,
            "first line\nsecond line that is longer than the width".as_bytes(),
        ));
        assert_eq!(
            lines(&screen),
            [
                "first line",
                "second line that is l",
                "onger than the width",
                ""
            ]
        );
    }

    #[test]
    fn client_text_longer_than_the_screen_shows_its_end() {
        let mut screen = Screen::client();
        screen.update(&received(0, b"1\n2\n3\n4\n5\n6"));
        assert_eq!(lines(&screen), ["3", "4", "5", "6"]);
        screen.update(&received(0, b"next"));
        assert_eq!(lines(&screen), ["next", "", "", ""]);
    }

    #[test]
    fn control_characters_are_not_drawn() {
        let mut screen = Screen::client();
        screen.update(&received(0, b"a\tb\x07c\r"));
        assert_eq!(lines(&screen), ["a bc", "", "", ""]);
    }

    #[test]
    fn client_shows_connection_changes() {
        let mut screen = Screen::client();
        let remote = "10.0.0.1:5001".parse().unwrap();
        screen.update(&TestEvent::Connecting { remote, attempt: 2 });
        assert_eq!(
            lines(&screen),
            ["connecting to", "10.0.0.1:5001", "attempt 2", ""]
        );
        screen.update(&TestEvent::Opened {
            conn: ConnId(0),
            peer: remote,
            open: 1,
        });
        assert_eq!(lines(&screen), ["connected to", "10.0.0.1:5001", "", ""]);
        screen.update(&TestEvent::Closed {
            conn: ConnId(0),
            reason: CloseReason::Eof,
            open: 0,
        });
        assert_eq!(lines(&screen), ["disconnected", "eof", "", ""]);
        let error = crate::Error::Connect { remote, error: () };
        screen.update(&Event::ConnectFailed {
            error: &error,
            retry_in: None,
        });
        assert_eq!(lines(&screen), ["connect failed", "gave up", "", ""]);
    }
}
