//! The tutorial's 128x64 OLED as a model: events change rows of text cheaply, drawing happens
//! only when the board asks, and only for the rows that changed.
//!
//! [`Screen`] keeps the rows, decodes received text and draws; its [`Layout`] says what goes
//! on which row: [`ServerLayout`] (`Screen::server()`) or [`ClientLayout`]
//! (`Screen::client()`). Four 16-px rows at y = 0, 16, 32, 48, as many characters each as fit
//! in 128 px: 21 in the ISO-8859-1 6x13 font, or, with the `cjk` feature, 8 Chinese characters
//! (the 16-px WenQuanYi font of the tutorial board's `DispChar`) or more Latin ones.
//!
//! Updates run in the echo path, so each message costs a bounded amount of work: only the
//! bytes that can still be on screen are decoded. Text is decoded per connection with
//! [`Utf8Decoder`]: a character split across receives shows whole, a byte sequence that is not
//! UTF-8 shows as a filled box, a character the font lacks (without `cjk`: Chinese) as a hollow
//! box.

mod font;
mod layout;
mod text;

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

use crate::event::{ConnId, Event};
use crate::utf8::Utf8Decoder;

pub use layout::{ClientLayout, Layout, ServerLayout, SERVER_TEXT_ROW};

/// How many pixels the screen gives `c` on a row: 6 for Latin-1 and for the boxes that stand
/// for what no font has; with the `cjk` feature, 8 to 16 for the characters of its font.
pub fn glyph_width(c: char) -> u32 {
    font::advance(c)
}
pub use text::{Line, COLUMNS};

/// Screen width in pixels.
pub const WIDTH: u32 = 128;
/// Screen height in pixels.
pub const HEIGHT: u32 = 64;
/// Height of one text row in pixels (the tutorial's `DispChar` rows).
pub const ROW_HEIGHT: u32 = 16;
/// Number of text rows.
pub const ROWS: usize = (HEIGHT / ROW_HEIGHT) as usize;

/// Connections whose partial characters are remembered at once.
const DECODERS: usize = 4;

/// The text model of the OLED, and its drawing on any `DrawTarget<Color = BinaryColor>`.
///
/// ```
/// use echo::embedded_graphics::mock_display::MockDisplay;
/// use echo::{ConnId, Event, Screen};
///
/// type MyEvent<'a> = Event<'a, ()>; // the stack's error type: none in this example
/// let mut screen = Screen::server();
/// screen.update(&MyEvent::Listening { local: "192.168.4.1:5001".parse().unwrap() });
/// screen.update(&MyEvent::Received { conn: ConnId(0), bytes: b"hello" });
/// assert_eq!(screen.line(0).to_string(), "192.168.4.1:5001");
/// assert_eq!(screen.line(3).to_string(), "hello");
///
/// let mut display = MockDisplay::new();
/// display.set_allow_out_of_bounds_drawing(true); // MockDisplay is 64x64, the screen 128x64
/// display.set_allow_overdraw(true); // a changed row is cleared, then drawn
/// let drawn = screen.draw(&mut display).unwrap();
/// assert!(drawn.is_some());
/// assert_eq!(screen.draw(&mut display).unwrap(), None, "nothing changed");
/// ```
#[derive(Clone, Debug)]
pub struct Screen<L> {
    rows: Rows,
    decoders: Decoders,
    layout: L,
}

impl Screen<ServerLayout> {
    /// The server's screen, before it listens.
    pub fn server() -> Self {
        Screen::new(ServerLayout::new())
    }
}

impl Screen<ClientLayout> {
    /// The client's screen, before it connects.
    pub fn client() -> Self {
        Screen::new(ClientLayout::new())
    }
}

impl<L: Layout> Screen<L> {
    fn new(layout: L) -> Self {
        let mut screen = Screen {
            rows: Rows::new(),
            decoders: Decoders::new(),
            layout,
        };
        screen.layout.start(&mut screen.rows);
        screen
    }

    /// The text of row `index` (0 at the top).
    ///
    /// # Panics
    /// If `index >= ROWS`.
    pub fn line(&self, index: usize) -> &Line {
        &self.rows.lines[index]
    }

    /// Whether a draw would change anything.
    pub fn is_dirty(&self) -> bool {
        self.rows.dirty != 0
    }

    /// Makes the next draw repaint everything (e.g. after the display was reset).
    pub fn invalidate(&mut self) {
        self.rows.invalidate();
    }

    /// A board message (e.g. `wifi: connecting`): the server's second row, the client's text.
    pub fn set_status(&mut self, status: &str) {
        self.layout.set_status(&mut self.rows, status);
    }

    /// Applies one event to the model; cheap, draws nothing.
    pub fn update<E>(&mut self, event: &Event<'_, E>) {
        match event {
            Event::Received { conn, bytes } => self.show_received(*conn, bytes),
            Event::Closed { conn, .. } => {
                self.decoders.forget(*conn);
                self.layout.update(&mut self.rows, event);
            }
            _ => self.layout.update(&mut self.rows, event),
        }
    }

    /// Draws the rows that changed since the last draw and returns the area drawn, `None` if
    /// nothing changed. Each changed row's 16-px band is cleared where text was or is, then
    /// its text drawn.
    pub fn draw<D>(&mut self, target: &mut D) -> Result<Option<Rectangle>, D::Error>
    where
        D: DrawTarget<Color = BinaryColor>,
    {
        self.rows.draw(target)
    }

    /// Shows a message's end. Runs in the echo path, so it looks at a bounded number of bytes:
    /// those that can still be on screen, not the whole message.
    fn show_received(&mut self, conn: ConnId, bytes: &[u8]) {
        let mut decoder = *self.decoders.get(conn);
        let mut tail = &bytes[bytes.len().saturating_sub(L::VISIBLE_BYTES)..];
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
        let mut started = false;
        let (layout, rows) = (&mut self.layout, &mut self.rows);
        decoder.decode(tail, |c| {
            // The first character of a message clears the previous one.
            if !started {
                started = true;
                layout.clear_text(rows);
            }
            layout.push_text(rows, c);
        });
        *self.decoders.get(conn) = decoder;
    }
}

/// The rows of text, which of them changed, and how much of each the panel has lit.
#[derive(Clone, Debug)]
pub struct Rows {
    pub(crate) lines: [Line; ROWS],
    /// Bit `i` set: row `i` changed since the last draw.
    dirty: u8,
    /// Per row, how many pixels from the left may be lit on the panel: what the next draw of
    /// that row must clear. The whole width while the panel's content is unknown.
    drawn_width: [u8; ROWS],
}

impl Rows {
    fn new() -> Self {
        Rows {
            lines: [Line::EMPTY; ROWS],
            dirty: (1 << ROWS) - 1,
            drawn_width: [WIDTH as u8; ROWS],
        }
    }

    fn invalidate(&mut self) {
        self.dirty = (1 << ROWS) - 1;
        self.drawn_width = [WIDTH as u8; ROWS];
    }

    /// Replaces row `row`; marks it changed only if its text differs.
    pub(crate) fn set(&mut self, row: usize, line: Line) {
        if line != self.lines[row] {
            self.lines[row] = line;
            self.mark(row);
        }
    }

    /// Marks row `row` changed (after editing `lines[row]` in place).
    pub(crate) fn mark(&mut self, row: usize) {
        self.dirty |= 1 << row;
    }

    fn draw<D>(&mut self, target: &mut D) -> Result<Option<Rectangle>, D::Error>
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
            let width = self.lines[row].width();
            let band = Rectangle::new(
                Point::new(0, row_top(row)),
                Size::new(width.max(u32::from(self.drawn_width[row])), ROW_HEIGHT),
            );
            text::draw_line(target, &self.lines[row], &band)?;
            self.drawn_width[row] = width as u8;
            if band.size.width > 0 {
                area = Some(area.map_or(band, |area| bounding_box(area, band)));
            }
        }
        self.dirty = 0;
        Ok(area)
    }
}

/// One UTF-8 decoder per connection whose text arrived lately, so that characters split
/// across receives of several clients do not mix.
#[derive(Clone, Debug)]
struct Decoders {
    entries: [(Option<ConnId>, Utf8Decoder); DECODERS],
    next_evicted: usize,
}

impl Decoders {
    fn new() -> Self {
        Decoders {
            entries: [(None, Utf8Decoder::new()); DECODERS],
            next_evicted: 0,
        }
    }

    /// `conn`'s decoder; a fresh one (taking a free entry, else the oldest) if it has none.
    fn get(&mut self, conn: ConnId) -> &mut Utf8Decoder {
        let index = match self
            .entries
            .iter()
            .position(|(owner, _)| *owner == Some(conn))
        {
            Some(index) => index,
            None => {
                let index = match self.entries.iter().position(|(owner, _)| owner.is_none()) {
                    Some(free) => free,
                    None => {
                        let evicted = self.next_evicted;
                        self.next_evicted = (evicted + 1) % DECODERS;
                        evicted
                    }
                };
                self.entries[index] = (Some(conn), Utf8Decoder::new());
                index
            }
        };
        &mut self.entries[index].1
    }

    fn forget(&mut self, conn: ConnId) {
        for entry in self
            .entries
            .iter_mut()
            .filter(|(owner, _)| *owner == Some(conn))
        {
            *entry = (None, Utf8Decoder::new());
        }
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::font::GLYPH_TOP;
    use super::layout::sealed::Sealed;
    use super::*;
    use core::convert::Infallible;
    use embedded_graphics::mock_display::MockDisplay;
    use embedded_graphics::mono_font::{iso_8859_1::FONT_6X13, MonoTextStyle};
    use embedded_graphics::primitives::PrimitiveStyle;
    use embedded_graphics::text::{Baseline, Text};
    use proptest::strategy::Strategy;
    use std::string::{String, ToString};
    use std::vec::Vec;

    type TestEvent<'a> = Event<'a, ()>;

    /// A 128x64 panel that remembers which pixels were written, and fails the test on any
    /// pixel outside it.
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
        let style = MonoTextStyle::new(&FONT_6X13, BinaryColor::On);
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

    fn lines<L: Layout>(screen: &Screen<L>) -> [String; ROWS] {
        core::array::from_fn(|row| screen.line(row).to_string())
    }

    fn received(conn: u32, bytes: &[u8]) -> Event<'_, ()> {
        Event::Received {
            conn: ConnId(conn),
            bytes,
        }
    }

    fn listening_server() -> Screen<ServerLayout> {
        let mut screen = Screen::server();
        screen.update(&TestEvent::Listening {
            local: "192.168.4.1:5001".parse().unwrap(),
        });
        screen
    }

    /// A screen that was drawn once, so that the next draw sends only what changes.
    fn drawn<L: Layout>(mut screen: Screen<L>) -> Screen<L> {
        screen.draw(&mut Panel::new()).unwrap();
        screen
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
    fn draws_every_row_as_embedded_graphics_draws_its_text() {
        let mut screen = listening_server();
        screen.update(&TestEvent::Opened {
            conn: ConnId(0),
            peer: "192.168.4.2:50000".parse().unwrap(),
            open: 1,
        });
        screen.update(&received(0, b"hello"));
        let mut panel = Panel::new();
        screen.draw(&mut panel).unwrap();
        for (row, text) in [
            "192.168.4.1:5001",
            "1 client",
            "+192.168.4.2:50000",
            "hello",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(panel.band(row), expected_band(text, row), "row {row}");
        }
    }

    #[test]
    fn invalidate_redraws_the_whole_width() {
        let mut screen = drawn(listening_server());
        let mut panel = Panel::new();
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
    fn a_closed_connection_leaves_no_half_character_behind() {
        let mut screen = listening_server();
        screen.update(&received(0, &"é".as_bytes()[..1]));
        screen.update(&TestEvent::Closed {
            conn: ConnId(0),
            reason: crate::CloseReason::Eof,
            open: 0,
        });
        // A later connection that happens to get the same id starts afresh.
        screen.update(&received(0, b"\xa9x"));
        assert_eq!(screen.line(SERVER_TEXT_ROW).to_string(), "\u{fffd}x");
    }

    #[test]
    fn boxes_stand_for_invalid_bytes_and_missing_glyphs() {
        // Drawn once, so that the next draw touches only the two cells of the new text.
        let mut screen = drawn(Screen::client());
        screen.update(&received(0, "\u{fffd}😀".as_bytes()));
        let mut display = MockDisplay::new();
        display.set_allow_overdraw(true); // each band is cleared, then drawn
        screen.draw(&mut display).unwrap();
        // A filled box for U+FFFD (what invalid UTF-8 decodes to), a hollow one for a
        // character no font has, each in its 6x13 cell one pixel below the row's top.
        display.assert_pattern(&[
            "............",
            "............",
            "............",
            ".####..####.",
            ".####..#..#.",
            ".####..#..#.",
            ".####..#..#.",
            ".####..#..#.",
            ".####..#..#.",
            ".####..#..#.",
            ".####..#..#.",
            ".####..####.",
            "............",
            "............",
            "............",
            "............",
        ]);
    }

    #[test]
    fn letters_next_to_boxes_are_drawn_whole() {
        let mut screen = Screen::client();
        screen.update(&received(0, "a😀\u{fffd}b".as_bytes()));
        let mut panel = Panel::new();
        screen.draw(&mut panel).unwrap();

        // The same drawn with embedded-graphics' text and styled rectangles.
        let mut expected = Panel::new();
        let style = MonoTextStyle::new(&FONT_6X13, BinaryColor::On);
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
    fn never_draws_outside_the_panel_whatever_the_text() {
        // Every row full, of wide, invalid and missing characters; the panel fails the test
        // on a pixel outside 128x64.
        let mut text = Vec::new();
        for _ in 0..ROWS * COLUMNS {
            text.extend_from_slice("W中😀".as_bytes());
            text.push(0xff);
        }
        let mut client = Screen::client();
        client.update(&received(0, &text));
        let mut panel = Panel::new();
        client.draw(&mut panel).unwrap();
        assert_rows_above_the_last_are_full(&client);
        assert!(panel.touched_rows.iter().any(|y| *y == HEIGHT as i32 - 1));

        let mut server = listening_server();
        server.update(&received(0, &text));
        let mut panel = Panel::new();
        server.draw(&mut panel).unwrap();
        assert!(server.line(SERVER_TEXT_ROW).width() > WIDTH - 16);
    }

    /// The next row's first character would not have fitted on any row above the last.
    fn assert_rows_above_the_last_are_full<L: Layout>(screen: &Screen<L>) {
        for row in 0..ROWS - 1 {
            let next = screen
                .line(row + 1)
                .chars()
                .next()
                .expect("text on the next row");
            assert!(
                screen.line(row).width() + font::advance(next) > WIDTH,
                "row {row} has room for {next:?}"
            );
        }
    }

    /// What a screen that decoded every byte of the stream would show of its last message with
    /// text, that message's whole text, and its length in bytes.
    fn shown_by_full_decoding<L: Layout>(
        mut screen: Screen<L>,
        stream: &[Vec<u8>],
    ) -> (Vec<String>, String, usize) {
        let mut decoder = Utf8Decoder::new();
        let mut last = (String::new(), 0);
        for message in stream {
            let mut text = String::new();
            decoder.decode(message, |c| text.push(c));
            if !text.is_empty() {
                last = (text, message.len());
            }
        }
        let (last, last_len) = last;
        screen.layout.clear_text(&mut screen.rows);
        last.chars()
            .for_each(|c| screen.layout.push_text(&mut screen.rows, c));
        (lines(&screen).to_vec(), last, last_len)
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
        ) {
            let mut server = Screen::server();
            let mut client = Screen::client();
            for message in &stream {
                server.update(&received(0, message));
                client.update(&received(0, message));
            }
            let (expected, _, _) = shown_by_full_decoding(Screen::server(), &stream);
            proptest::prop_assert_eq!(lines(&server).to_vec(), expected);

            // The message shown is the last one with text: a message of only the start of a
            // character shows nothing new.
            let (expected, whole, last_len) = shown_by_full_decoding(Screen::client(), &stream);
            if last_len <= ClientLayout::VISIBLE_BYTES {
                proptest::prop_assert_eq!(lines(&client).to_vec(), expected);
            } else {
                // A client message longer than the screen can hold: its end, wrapped from
                // where the shown part starts, filling at least the rows above the last.
                let text: String = lines(&client).concat();
                let visible: String = whole.chars().filter(|c| !c.is_control()).collect();
                proptest::prop_assert!(visible.ends_with(&text), "{text:?} does not end {visible:?}");
                assert_rows_above_the_last_are_full(&client);
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

    /// With the `cjk` feature: Chinese as the tutorial board's `oled.DispChar` shows it.
    #[cfg(feature = "cjk")]
    mod cjk {
        use super::*;
        use u8g2_fonts::types::{FontColor, VerticalPosition};
        use u8g2_fonts::{fonts, FontRenderer};

        /// `c` drawn on its own by u8g2 with its left edge at `x` in row `row`, the baseline 14 px
        /// below the row's top: what the screen must show there.
        fn glyph(c: char, x: i32, row: usize) -> Panel {
            let mut panel = Panel::new();
            FontRenderer::new::<fonts::u8g2_font_wqy16_t_gb2312>()
                .render(
                    c,
                    Point::new(x, row_top(row) + 14),
                    VerticalPosition::Baseline,
                    FontColor::Transparent(BinaryColor::On),
                    &mut panel,
                )
                .unwrap();
            panel
        }

        /// The pixels of the `width` x 16 cell at `x` in row `row`.
        fn cell(panel: &Panel, row: usize, x: usize, width: usize) -> Vec<Vec<bool>> {
            panel
                .band(row)
                .iter()
                .map(|line| line[x..x + width].to_vec())
                .collect()
        }

        fn lit(cell: &[Vec<bool>]) -> usize {
            cell.iter().flatten().filter(|on| **on).count()
        }

        #[test]
        fn ni_hao_shi_jie_fills_the_bottom_row_with_its_glyphs() {
            let text = "你好，世界";
            let mut screen = drawn(listening_server());
            screen.update(&received(0, text.as_bytes()));
            assert_eq!(screen.line(SERVER_TEXT_ROW).to_string(), text);
            assert_eq!(screen.line(SERVER_TEXT_ROW).width(), 5 * 16);
            let mut panel = Panel::new();
            screen.draw(&mut panel).unwrap();
            assert!(
                panel.touched_rows.iter().all(|y| (48..64).contains(y)),
                "nothing leaves the row"
            );
            let cells: Vec<_> = (0..5).map(|i| cell(&panel, 3, i * 16, 16)).collect();
            for (i, c) in text.chars().enumerate() {
                let expected = glyph(c, i as i32 * 16, 3);
                assert_eq!(cells[i], cell(&expected, 3, i * 16, 16), "{c}");
                assert!(lit(&cells[i]) > 4, "{c} is drawn");
            }
            // A Chinese character takes the row's full height.
            let rows_lit =
                |cell: &Vec<Vec<bool>>| cell.iter().filter(|l| l.contains(&true)).count();
            assert!(
                rows_lit(&cells[0]) >= 14,
                "你 is {} px high",
                rows_lit(&cells[0])
            );
            // Different characters draw differently.
            for a in 0..5 {
                for b in a + 1..5 {
                    assert_ne!(cells[a], cells[b], "characters {a} and {b} look the same");
                }
            }
            // Nothing right of the text.
            assert!(panel.band(3).iter().all(|line| !line[80..].contains(&true)));
        }

        #[test]
        fn a_mixed_line_draws_each_character_in_its_font() {
            // Latin-1 in 6 px cells, Chinese in 16 px, then a missing glyph and invalid UTF-8.
            let mut bytes = "hé 你好".as_bytes().to_vec();
            bytes.extend_from_slice("😀".as_bytes());
            bytes.push(0xff);
            let mut screen = drawn(Screen::client());
            screen.update(&received(0, &bytes));
            assert_eq!(screen.line(0).to_string(), "hé 你好😀\u{fffd}");
            assert_eq!(screen.line(0).width(), 3 * 6 + 2 * 16 + 2 * 6);
            let mut panel = Panel::new();
            screen.draw(&mut panel).unwrap();
            assert!(panel.touched_rows.iter().all(|y| (0..16).contains(y)));

            assert_eq!(
                cell(&panel, 0, 0, 18),
                cell(
                    &{
                        let mut latin = Panel::new();
                        let style = MonoTextStyle::new(&FONT_6X13, BinaryColor::On);
                        Text::with_baseline("hé ", Point::new(0, GLYPH_TOP), style, Baseline::Top)
                            .draw(&mut latin)
                            .unwrap();
                        latin
                    },
                    0,
                    0,
                    18
                )
            );
            assert_eq!(
                cell(&panel, 0, 18, 16),
                cell(&glyph('你', 18, 0), 0, 18, 16)
            );
            assert_eq!(
                cell(&panel, 0, 34, 16),
                cell(&glyph('好', 34, 0), 0, 34, 16)
            );
            // The boxes: hollow, then filled.
            let hollow = cell(&panel, 0, 50, 6);
            let filled = cell(&panel, 0, 56, 6);
            assert!(hollow[GLYPH_TOP as usize + 2][1] && !hollow[GLYPH_TOP as usize + 5][3]);
            assert!(filled[GLYPH_TOP as usize + 2][1] && filled[GLYPH_TOP as usize + 5][3]);
        }

        #[test]
        fn client_text_wraps_by_pixel_width() {
            let mut screen = Screen::client();
            screen.update(&received(0, "ab一二三四五六七八九十".as_bytes()));
            // 2 x 6 + 7 x 16 = 124 px: the eighth character would pass 128.
            assert_eq!(lines(&screen), ["ab一二三四五六七", "八九十", "", ""]);
        }

        #[test]
        fn the_server_row_keeps_the_end_of_long_chinese_text() {
            let mut screen = listening_server();
            screen.update(&received(0, "一二三四五六七八九十".as_bytes()));
            assert_eq!(screen.line(SERVER_TEXT_ROW).to_string(), "三四五六七八九十");
            screen.update(&received(0, "abcdefghijklmnopqrstuvwxyz十".as_bytes()));
            // 16 px for 十 leaves 112: 18 letters.
            assert_eq!(
                screen.line(SERVER_TEXT_ROW).to_string(),
                "ijklmnopqrstuvwxyz十"
            );
        }
    }
}
