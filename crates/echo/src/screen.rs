//! The tutorial's 128x64 OLED as a model: events change text rows cheaply, drawing happens
//! only when the board asks, and only for rows that changed.
//!
//! Layout: four 16-px rows at y = 0, 16, 32, 48 in the ISO-8859-1 6x13 font (21 columns).
//! - server: row 0 `IP:PORT`, row 1 `accepting.....` or the number of clients, row 2 the last
//!   connection change, row 3 the last received text (only that band is cleared and redrawn per
//!   message, like the tutorial's `fill_rect(0,48,128,16,0)`);
//! - client: the last received text from (0,0), wrapped to the width; when it is longer than
//!   the screen, its end is shown (of a message longer than the screen's characters at 4 bytes
//!   each, the shown part is wrapped from where it starts).
//!
//! Updates run in the echo path, so each message costs a bounded amount of work: only the
//! bytes that can still be on screen are decoded.
//!
//! Text is decoded per connection with [`Utf8Decoder`]. A byte sequence that is not UTF-8 shows
//! as a filled box, a character the font lacks (e.g. Chinese) as a hollow box.

use core::fmt::{self, Write as _};
use core::net::IpAddr;

use embedded_graphics::mono_font::iso_8859_1::FONT_6X13;
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics::text::{renderer::TextRenderer, Baseline};

use crate::addr::Address;
use crate::event::{ConnId, Event};
use crate::time::millis;
use crate::utf8::Utf8Decoder;

/// Screen width in pixels.
pub const WIDTH: u32 = 128;
/// Screen height in pixels.
pub const HEIGHT: u32 = 64;
/// Height of one text row in pixels (the tutorial's `DispChar` rows).
pub const ROW_HEIGHT: u32 = 16;
/// Number of text rows.
pub const ROWS: usize = (HEIGHT / ROW_HEIGHT) as usize;

const FONT: MonoFont<'static> = FONT_6X13;
/// Characters per row.
pub const COLUMNS: usize = (WIDTH / FONT_6X13.character_size.width) as usize;
/// Vertical offset of the glyphs inside their row, to center the 13-px font.
const GLYPH_TOP: i32 = ((ROW_HEIGHT - FONT_6X13.character_size.height) / 2) as i32;

/// The server's row with its received text, at y = 48.
pub const SERVER_TEXT_ROW: usize = 3;

/// Connections whose partial characters are remembered at once.
const DECODERS: usize = 4;

/// One row of text, at most [`COLUMNS`] characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    chars: [char; COLUMNS],
    len: usize,
}

impl Line {
    const EMPTY: Line = Line {
        chars: [' '; COLUMNS],
        len: 0,
    };

    /// The characters of the row.
    pub fn chars(&self) -> impl Iterator<Item = char> + '_ {
        self.chars[..self.len].iter().copied()
    }

    fn is_full(&self) -> bool {
        self.len == COLUMNS
    }

    /// Appends `c`; returns false (and drops it) when the row is full.
    fn push(&mut self, c: char) -> bool {
        if self.is_full() {
            return false;
        }
        self.chars[self.len] = c;
        self.len += 1;
        true
    }

    /// Appends `c`, dropping the first character when full, so the row shows the text's end.
    fn push_tail(&mut self, c: char) {
        if self.is_full() {
            self.chars.copy_within(1.., 0);
            self.len -= 1;
        }
        self.push(c);
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chars().try_for_each(|c| f.write_char(c))
    }
}

/// Writing past the end of a line truncates, it is not an error.
impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            self.push(c);
        }
        Ok(())
    }
}

/// Which of the tutorial's two screens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// The text model of the OLED, and its drawing on any `DrawTarget<Color = BinaryColor>`.
#[derive(Clone, Debug)]
pub struct Screen {
    role: Role,
    lines: [Line; ROWS],
    /// Bit `i` set: row `i` changed since the last draw.
    dirty: u8,
    /// Per row, how many pixels from the left may be lit on the panel: what the next draw of
    /// that row must clear. The whole width while the panel's content is unknown.
    drawn_width: [u8; ROWS],
    local_ip: Option<IpAddr>,
    port: Option<u16>,
    clients: usize,
    /// Client text cursor: the row being written.
    cursor_row: usize,
    /// Received text is being written (the first character of a message clears the old one).
    text_started: bool,
    decoders: [(Option<ConnId>, Utf8Decoder); DECODERS],
    next_evicted: usize,
}

impl Screen {
    /// The server's screen, before it listens.
    pub fn server() -> Self {
        let mut screen = Screen::new(Role::Server);
        screen.set_line(1, format_args!("starting....."));
        screen
    }

    /// The client's screen, before it connects.
    pub fn client() -> Self {
        Screen::new(Role::Client)
    }

    fn new(role: Role) -> Self {
        Screen {
            role,
            lines: [Line::EMPTY; ROWS],
            dirty: (1 << ROWS) - 1,
            drawn_width: [WIDTH as u8; ROWS],
            local_ip: None,
            port: None,
            clients: 0,
            cursor_row: 0,
            text_started: false,
            decoders: [(None, Utf8Decoder::new()); DECODERS],
            next_evicted: 0,
        }
    }

    /// The text of row `index` (0 at the top).
    ///
    /// # Panics
    /// If `index >= ROWS`.
    pub fn line(&self, index: usize) -> &Line {
        &self.lines[index]
    }

    /// Whether a draw would change anything.
    pub fn is_dirty(&self) -> bool {
        self.dirty != 0
    }

    /// Makes the next draw repaint everything (e.g. after the display was reset).
    pub fn invalidate(&mut self) {
        self.dirty = (1 << ROWS) - 1;
        self.drawn_width = [WIDTH as u8; ROWS];
    }

    /// The board's address, shown with the port on the server's first row.
    pub fn set_local_ip(&mut self, ip: IpAddr) {
        self.local_ip = Some(ip);
        self.show_address();
    }

    /// A board message (e.g. `wifi: connecting`): the server's second row, the client's text.
    pub fn set_status(&mut self, status: &str) {
        match self.role {
            Role::Server => self.set_line(1, format_args!("{status}")),
            Role::Client => {
                self.clear_text();
                status.chars().for_each(|c| self.push_text(c));
            }
        }
    }

    /// Applies one event to the model; cheap, draws nothing.
    pub fn update<E>(&mut self, event: &Event<'_, E>) {
        match event {
            Event::Listening { port } => {
                self.port = Some(*port);
                self.clients = 0;
                self.show_address();
                self.show_clients();
            }
            Event::Accepted { peer, .. } => {
                self.clients += 1;
                self.show_clients();
                self.set_line(2, format_args!("+{}", Address(*peer)));
            }
            Event::Closed { conn, reason } => {
                self.clients = self.clients.saturating_sub(1);
                self.forget(*conn);
                self.show_clients();
                self.set_line(2, format_args!("-{conn} {}", reason.as_str()));
            }
            Event::Received { conn, bytes } => self.show_received(*conn, bytes),
            Event::Connecting { remote, attempt } => {
                self.set_text(format_args!("connecting to\n{}", Address(*remote)));
                if *attempt > 1 {
                    self.set_text_more(format_args!("\nattempt {attempt}"));
                }
            }
            Event::Connected { remote, .. } => {
                self.set_text(format_args!("connected to\n{}", Address(*remote)))
            }
            Event::ConnectFailed { retry_in, .. } => self.set_text(format_args!(
                "connect failed\nretry in {} ms",
                millis(*retry_in)
            )),
            Event::Disconnected { conn, reason } => {
                self.forget(*conn);
                self.set_text(format_args!("disconnected\n{}", reason.as_str()));
            }
        }
    }

    /// Draws the rows that changed since the last draw and returns the area drawn, `None` if
    /// nothing changed. Each changed row's 16-px band is cleared, then its text drawn.
    pub fn draw<D>(&mut self, target: &mut D) -> Result<Option<Rectangle>, D::Error>
    where
        D: DrawTarget<Color = BinaryColor>,
    {
        let mut area: Option<Rectangle> = None;
        for row in 0..ROWS {
            if self.dirty & (1 << row) == 0 {
                continue;
            }
            // Only what was lit or will be lit changes: a short message over a short one
            // sends a few columns to the panel, not the whole band.
            let width = self.lines[row].len as u32 * FONT.character_size.width;
            let band = Rectangle::new(
                Point::new(0, row_top(row)),
                Size::new(width.max(u32::from(self.drawn_width[row])), ROW_HEIGHT),
            );
            draw_line(target, &self.lines[row], &band)?;
            self.drawn_width[row] = width as u8;
            if band.size.width > 0 {
                area = Some(area.map_or(band, |area| bounding_box(area, band)));
            }
        }
        self.dirty = 0;
        Ok(area)
    }

    fn set_line(&mut self, row: usize, text: fmt::Arguments<'_>) {
        let mut line = Line::EMPTY;
        let _ = line.write_fmt(text);
        if line != self.lines[row] {
            self.lines[row] = line;
            self.dirty |= 1 << row;
        }
    }

    fn show_address(&mut self) {
        match (self.local_ip, self.port) {
            (Some(ip), Some(port)) => {
                self.set_line(0, format_args!("{}:{}", Address(ip), u32::from(port)))
            }
            (None, Some(port)) => self.set_line(0, format_args!("port {}", u32::from(port))),
            (Some(ip), None) => self.set_line(0, format_args!("{}", Address(ip))),
            (None, None) => {}
        }
    }

    fn show_clients(&mut self) {
        match self.clients {
            0 => self.set_line(1, format_args!("accepting.....")),
            1 => self.set_line(1, format_args!("1 client")),
            n => self.set_line(1, format_args!("{n} clients")),
        }
    }

    /// Shows a message's end. Runs in the echo path, so it looks at a bounded number of bytes:
    /// those that can still be on screen, not the whole message.
    fn show_received(&mut self, conn: ConnId, bytes: &[u8]) {
        let mut decoder = *self.decoder(conn);
        let visible_bytes = match self.role {
            Role::Server => COLUMNS * 4,
            Role::Client => ROWS * COLUMNS * 4,
        };
        let mut tail = &bytes[bytes.len().saturating_sub(visible_bytes)..];
        if tail.len() < bytes.len() {
            // Start at a character boundary: UTF-8 resynchronises there, so what follows
            // decodes as it would in the whole stream; a character the decoder held was
            // finished in the skipped part.
            let continuation = tail
                .iter()
                .take(3)
                .take_while(|b| **b & 0xC0 == 0x80)
                .count();
            tail = &tail[continuation..];
            decoder = Utf8Decoder::new();
        }
        self.text_started = false;
        decoder.decode(tail, |c| self.push_received(c));
        *self.decoder(conn) = decoder;
    }

    /// One decoded character of a message: the first one clears the previous message.
    fn push_received(&mut self, c: char) {
        if !self.text_started {
            self.text_started = true;
            match self.role {
                Role::Server => {
                    self.lines[SERVER_TEXT_ROW] = Line::EMPTY;
                    self.dirty |= 1 << SERVER_TEXT_ROW;
                }
                Role::Client => self.clear_text(),
            }
        }
        match self.role {
            Role::Server => {
                if let Some(c) = visible(c, ' ') {
                    self.lines[SERVER_TEXT_ROW].push_tail(c);
                }
            }
            Role::Client => self.push_text(c),
        }
    }

    fn set_text(&mut self, text: fmt::Arguments<'_>) {
        self.clear_text();
        self.set_text_more(text);
    }

    fn set_text_more(&mut self, text: fmt::Arguments<'_>) {
        struct Writer<'s>(&'s mut Screen);
        impl fmt::Write for Writer<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                s.chars().for_each(|c| self.0.push_text(c));
                Ok(())
            }
        }
        let _ = Writer(self).write_fmt(text);
    }

    fn clear_text(&mut self) {
        self.lines = [Line::EMPTY; ROWS];
        self.cursor_row = 0;
        self.dirty = (1 << ROWS) - 1;
    }

    /// Wraps at the width and at `\n`; past the last row, the text scrolls up.
    fn push_text(&mut self, c: char) {
        let Some(c) = visible(c, '\n') else { return };
        if c == '\n' || self.lines[self.cursor_row].is_full() {
            self.new_text_row();
        }
        if c != '\n' {
            self.lines[self.cursor_row].push(c);
        }
        self.dirty = (1 << ROWS) - 1;
    }

    fn new_text_row(&mut self) {
        if self.cursor_row + 1 < ROWS {
            self.cursor_row += 1;
        } else {
            self.lines.copy_within(1.., 0);
            self.lines[ROWS - 1] = Line::EMPTY;
        }
    }

    fn decoder(&mut self, conn: ConnId) -> &mut Utf8Decoder {
        let index = match self
            .decoders
            .iter()
            .position(|(owner, _)| *owner == Some(conn))
        {
            Some(index) => index,
            None => {
                let index = match self.decoders.iter().position(|(owner, _)| owner.is_none()) {
                    Some(free) => free,
                    None => {
                        let evicted = self.next_evicted;
                        self.next_evicted = (evicted + 1) % DECODERS;
                        evicted
                    }
                };
                self.decoders[index] = (Some(conn), Utf8Decoder::new());
                index
            }
        };
        &mut self.decoders[index].1
    }

    fn forget(&mut self, conn: ConnId) {
        for entry in self
            .decoders
            .iter_mut()
            .filter(|(owner, _)| *owner == Some(conn))
        {
            *entry = (None, Utf8Decoder::new());
        }
    }
}

/// Control characters are not drawn: `\t` becomes a space, `newline` is kept as `\n` (the
/// client wraps on it) and the rest are dropped.
fn visible(c: char, newline: char) -> Option<char> {
    match c {
        '\n' => Some(newline),
        '\t' => Some(' '),
        c if c.is_control() => None,
        c => Some(c),
    }
}

fn row_top(row: usize) -> i32 {
    row as i32 * ROW_HEIGHT as i32
}

/// The smallest rectangle holding both, for rectangles anchored at x = 0.
fn bounding_box(a: Rectangle, b: Rectangle) -> Rectangle {
    let top = a.top_left.y.min(b.top_left.y);
    let bottom = (a.top_left.y + a.size.height as i32).max(b.top_left.y + b.size.height as i32);
    Rectangle::new(
        Point::new(0, top),
        Size::new(a.size.width.max(b.size.width), (bottom - top) as u32),
    )
}

/// Clears `band` (the row's lit part), then draws its text; boxes stand for what the font
/// cannot show.
///
/// One glyph at a time and with plain fills: the `Text` drawable and styled rectangles would
/// bring line splitting and stroke rendering that a row of single-line text never needs.
fn draw_line<D>(target: &mut D, line: &Line, band: &Rectangle) -> Result<(), D::Error>
where
    D: DrawTarget<Color = BinaryColor>,
{
    target.fill_solid(band, BinaryColor::Off)?;
    let top = band.top_left.y;

    let style = MonoTextStyle::new(&FONT, BinaryColor::On);
    let glyph = FONT.character_size;
    for (column, c) in line.chars().enumerate() {
        let cell = Point::new(column as i32 * glyph.width as i32, top + GLYPH_TOP);
        let mut utf8 = [0; 4];
        match c {
            char::REPLACEMENT_CHARACTER | '\u{100}'.. => {
                let outer = Size::new(glyph.width - 2, glyph.height - 4);
                target.fill_solid(
                    &Rectangle::new(cell + Point::new(1, 2), outer),
                    BinaryColor::On,
                )?;
                if c != char::REPLACEMENT_CHARACTER {
                    // A hollow box: the inside cleared again.
                    let inner = outer - Size::new(2, 2);
                    target.fill_solid(
                        &Rectangle::new(cell + Point::new(2, 3), inner),
                        BinaryColor::Off,
                    )?;
                }
            }
            c => {
                style.draw_string(c.encode_utf8(&mut utf8), cell, Baseline::Top, target)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::event::CloseReason;
    use core::convert::Infallible;
    use embedded_graphics::mock_display::MockDisplay;
    use embedded_graphics::primitives::PrimitiveStyle;
    use embedded_graphics::text::Text;
    use proptest::strategy::Strategy;
    use std::string::{String, ToString};
    use std::vec::Vec;

    type TestEvent<'a> = Event<'a, ()>;

    /// A 128x64 panel that remembers which pixels were written.
    struct Panel {
        on: [[bool; WIDTH as usize]; HEIGHT as usize],
        touched_rows: Vec<i32>,
    }

    impl Panel {
        fn new() -> Self {
            Panel {
                on: [[false; WIDTH as usize]; HEIGHT as usize],
                touched_rows: Vec::new(),
            }
        }

        fn band(&self, row: usize) -> Vec<[bool; WIDTH as usize]> {
            self.on[row * 16..row * 16 + 16].to_vec()
        }
    }

    impl OriginDimensions for Panel {
        fn size(&self) -> Size {
            Size::new(WIDTH, HEIGHT)
        }
    }

    impl DrawTarget for Panel {
        type Color = BinaryColor;
        type Error = Infallible;

        fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
        where
            I: IntoIterator<Item = Pixel<BinaryColor>>,
        {
            for Pixel(point, color) in pixels {
                assert!(
                    point.x >= 0
                        && point.x < WIDTH as i32
                        && point.y >= 0
                        && point.y < HEIGHT as i32,
                    "drew off the panel at {point:?}"
                );
                self.on[point.y as usize][point.x as usize] = color.is_on();
                self.touched_rows.push(point.y);
            }
            Ok(())
        }
    }

    /// What `text` looks like in row `row`, drawn directly with embedded-graphics.
    fn expected_band(text: &str, row: usize) -> Vec<[bool; WIDTH as usize]> {
        let mut panel = Panel::new();
        let style = MonoTextStyle::new(&FONT, BinaryColor::On);
        Text::with_baseline(
            text,
            Point::new(0, row_top(row) + GLYPH_TOP),
            style,
            Baseline::Top,
        )
        .draw(&mut panel)
        .unwrap();
        panel.band(row)
    }

    fn lines(screen: &Screen) -> [String; ROWS] {
        core::array::from_fn(|row| screen.line(row).to_string())
    }

    fn received(conn: u32, bytes: &[u8]) -> Event<'_, ()> {
        Event::Received {
            conn: ConnId(conn),
            bytes,
        }
    }

    fn listening_server() -> Screen {
        let mut screen = Screen::server();
        screen.set_local_ip("192.168.4.1".parse().unwrap());
        screen.update(&TestEvent::Listening { port: 5001 });
        screen
    }

    #[test]
    fn server_layout_follows_the_tutorial() {
        let mut screen = listening_server();
        assert_eq!(
            lines(&screen),
            ["192.168.4.1:5001", "accepting.....", "", ""]
        );
        screen.update(&TestEvent::Accepted {
            conn: ConnId(0),
            peer: "192.168.4.2:50000".parse().unwrap(),
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
        screen.update(&TestEvent::Closed {
            conn: ConnId(0),
            reason: CloseReason::Eof,
        });
        assert_eq!(screen.line(1).to_string(), "accepting.....");
        assert_eq!(screen.line(2).to_string(), "-#0 eof");

        let mut panel = Panel::new();
        screen.draw(&mut panel).unwrap();
        assert_eq!(panel.band(0), expected_band("192.168.4.1:5001", 0));
        assert_eq!(panel.band(3), expected_band("hello", 3));
    }

    #[test]
    fn a_message_redraws_only_the_bottom_band_where_text_was_or_is() {
        let mut screen = listening_server();
        let mut panel = Panel::new();
        let first = screen.draw(&mut panel).unwrap();
        assert_eq!(
            first,
            Some(Rectangle::new(Point::zero(), Size::new(128, 64))),
            "the panel starts unknown"
        );
        assert_eq!(
            screen.draw(&mut panel).unwrap(),
            None,
            "nothing changed, nothing drawn"
        );

        screen.update(&received(0, b"first"));
        screen.update(&received(0, b"second"));
        panel.touched_rows.clear();
        let area = screen.draw(&mut panel).unwrap();
        assert_eq!(
            area,
            Some(Rectangle::new(Point::new(0, 48), Size::new(6 * 6, 16)))
        );
        assert!(panel.touched_rows.iter().all(|y| (48..64).contains(y)));
        assert_eq!(panel.band(3), expected_band("second", 3));

        // A shorter message clears what the longer one lit, and nothing more.
        screen.update(&received(0, b"hi"));
        let area = screen.draw(&mut panel).unwrap();
        assert_eq!(
            area,
            Some(Rectangle::new(Point::new(0, 48), Size::new(6 * 6, 16)))
        );
        assert_eq!(
            panel.band(3),
            expected_band("hi", 3),
            "no pixel of the longer text is left"
        );
    }

    #[test]
    fn invalidate_redraws_the_whole_width() {
        let mut screen = listening_server();
        let mut panel = Panel::new();
        screen.draw(&mut panel).unwrap();
        // Something else drew on the panel: the next full draw must clear it all.
        panel.on[60][120] = true;
        screen.invalidate();
        assert_eq!(
            screen.draw(&mut panel).unwrap(),
            Some(Rectangle::new(Point::zero(), Size::new(128, 64)))
        );
        assert!(!panel.on[60][120]);
    }

    #[test]
    fn a_character_split_across_receives_is_shown_whole() {
        let mut screen = listening_server();
        let bytes = "café".as_bytes();
        screen.update(&received(0, &bytes[..4]));
        assert_eq!(screen.line(SERVER_TEXT_ROW).to_string(), "caf");
        screen.update(&received(0, &bytes[4..]));
        assert_eq!(screen.line(SERVER_TEXT_ROW).to_string(), "é");
    }

    #[test]
    fn split_characters_of_two_clients_do_not_mix() {
        let mut screen = listening_server();
        let e_acute = "é".as_bytes();
        let u_umlaut = "ü".as_bytes();
        screen.update(&received(0, &e_acute[..1]));
        screen.update(&received(1, &u_umlaut[..1]));
        screen.update(&received(0, &e_acute[1..]));
        assert_eq!(screen.line(SERVER_TEXT_ROW).to_string(), "é");
        screen.update(&received(1, &u_umlaut[1..]));
        assert_eq!(screen.line(SERVER_TEXT_ROW).to_string(), "ü");
    }

    #[test]
    fn invalid_bytes_show_as_a_filled_box() {
        let mut screen = listening_server();
        screen.update(&received(0, b"a\xffb"));
        assert_eq!(screen.line(SERVER_TEXT_ROW).to_string(), "a\u{fffd}b");
        let mut panel = Panel::new();
        screen.draw(&mut panel).unwrap();
        // The box fills the middle of the second cell; the letters around it are intact.
        assert!(panel.on[48 + 8][6 + 2]);
        let band = panel.band(3);
        let expected = expected_band("a b", 3);
        for y in 0..16 {
            assert_eq!(band[y][..6], expected[y][..6]);
            assert_eq!(band[y][12..], expected[y][12..]);
        }
    }

    /// What a screen that decoded every byte of the stream would show of its last message, and
    /// that message's whole text.
    fn shown_by_full_decoding(stream: &[Vec<u8>], role: Role) -> (Vec<String>, String) {
        let mut decoder = Utf8Decoder::new();
        let mut last = String::new();
        for message in stream {
            let mut text = String::new();
            decoder.decode(message, |c| text.push(c));
            if !text.is_empty() {
                last = text;
            }
        }
        let mut screen = Screen::new(role);
        last.chars().for_each(|c| screen.push_received(c));
        (shown(&screen, role), last)
    }

    fn shown(screen: &Screen, role: Role) -> Vec<String> {
        match role {
            Role::Server => std::vec![screen.line(SERVER_TEXT_ROW).to_string()],
            Role::Client => lines(screen).to_vec(),
        }
    }

    proptest::proptest! {
        #[test]
        fn long_messages_show_what_decoding_everything_shows(
            stream in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        "[a-zé中😀 ]{1,8}".prop_map(std::string::String::into_bytes),
                        proptest::collection::vec(0x80u8..=0xFF, 1..3),
                    ],
                    0..120,
                ).prop_map(|parts| parts.concat()),
                1..4,
            ),
            client in proptest::bool::ANY,
        ) {
            let role = if client { Role::Client } else { Role::Server };
            let mut screen = Screen::new(role);
            for message in &stream {
                screen.update(&received(0, message));
            }
            let (expected, whole) = shown_by_full_decoding(&stream, role);
            let last_len = stream.iter().rev().find(|m| !m.is_empty()).map_or(0, Vec::len);
            if role == Role::Server || last_len <= ROWS * COLUMNS * 4 {
                proptest::prop_assert_eq!(shown(&screen, role), expected);
            } else {
                // A client message longer than the screen can hold: its end, wrapped from
                // where the shown part starts, filling at least the rows above the last.
                let text: String = shown(&screen, role).concat();
                let visible: String = whole.chars().filter(|c| !c.is_control()).collect();
                proptest::prop_assert!(visible.ends_with(&text), "{text:?} does not end {visible:?}");
                proptest::prop_assert!(text.chars().count() > (ROWS - 1) * COLUMNS);
            }
        }
    }

    #[test]
    fn a_long_message_cut_inside_a_character_shows_no_stray_box() {
        // 85 four-byte characters and one of two bytes: the bytes that can be on screen
        // start inside the second character.
        let text = std::format!("{}é", "😀".repeat(85));
        let mut screen = Screen::client();
        screen.update(&received(0, text.as_bytes()));
        let shown: String = lines(&screen).concat();
        assert_eq!(shown, std::format!("{}é", "😀".repeat(83)));
        assert_eq!(screen.line(0).chars().count(), COLUMNS);
    }

    #[test]
    fn long_text_keeps_its_end_on_the_server_row() {
        let mut screen = listening_server();
        let text = "0123456789abcdefghijklmnopqrstuvwxyz";
        screen.update(&received(0, text.as_bytes()));
        assert_eq!(
            screen.line(SERVER_TEXT_ROW).to_string(),
            &text[text.len() - COLUMNS..]
        );
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
        let mut panel = Panel::new();
        let area = screen.draw(&mut panel).unwrap();
        assert_eq!(
            area,
            Some(Rectangle::new(Point::zero(), Size::new(128, 64)))
        );
        assert_eq!(panel.band(0), expected_band("first line", 0));
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
    fn client_shows_connection_changes() {
        let mut screen = Screen::client();
        let remote = "10.0.0.1:5001".parse().unwrap();
        screen.update(&TestEvent::Connecting { remote, attempt: 2 });
        assert_eq!(
            lines(&screen),
            ["connecting to", "10.0.0.1:5001", "attempt 2", ""]
        );
        screen.update(&TestEvent::Disconnected {
            conn: ConnId(0),
            reason: CloseReason::Eof,
        });
        assert_eq!(lines(&screen), ["disconnected", "eof", "", ""]);
    }

    #[test]
    fn characters_the_font_lacks_show_as_a_hollow_box() {
        let mut screen = Screen::client();
        screen.update(&received(0, "中".as_bytes()));
        let mut panel = Panel::new();
        screen.draw(&mut panel).unwrap();
        // Outline on, inside off.
        assert!(panel.on[GLYPH_TOP as usize + 2][1]);
        assert!(!panel.on[GLYPH_TOP as usize + 5][3]);
    }

    #[test]
    fn boxes_fill_the_cells_of_what_cannot_be_shown() {
        let mut screen = Screen::client();
        screen.update(&received(0, "a中\u{fffd}b".as_bytes()));
        let mut panel = Panel::new();
        screen.draw(&mut panel).unwrap();

        // The same drawn with embedded-graphics' text and styled rectangles.
        let mut expected = Panel::new();
        let style = MonoTextStyle::new(&FONT, BinaryColor::On);
        Text::with_baseline("a  b", Point::new(0, GLYPH_TOP), style, Baseline::Top)
            .draw(&mut expected)
            .unwrap();
        let cell = |column: i32| {
            Rectangle::new(Point::new(column * 6 + 1, GLYPH_TOP + 2), Size::new(4, 9))
        };
        cell(1)
            .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 1))
            .draw(&mut expected)
            .unwrap();
        cell(2)
            .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
            .draw(&mut expected)
            .unwrap();
        assert_eq!(panel.band(0), expected.band(0));
    }

    #[test]
    fn draws_on_a_mock_display_without_leaving_its_bounds() {
        // MockDisplay is 64x64: the left half of the screen, checked for overdraw.
        let mut display = MockDisplay::new();
        display.set_allow_out_of_bounds_drawing(true);
        display.set_allow_overdraw(true);
        let mut screen = listening_server();
        screen.draw(&mut display).unwrap();
        assert_eq!(
            display.affected_area(),
            Rectangle::new(Point::zero(), Size::new(64, 64))
        );
    }
}
