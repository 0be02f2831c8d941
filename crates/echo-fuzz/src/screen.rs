//! `Utf8Decoder` and `Screen` on arbitrary bytes.
//!
//! Properties: the decoder, fed the bytes in arbitrary chunks, gives what
//! `String::from_utf8_lossy` gives for the whole; the screen never draws outside 128x64; the
//! server's text row shows the end of the message that fits, as `from_utf8_lossy` decodes it.

use std::convert::Infallible;

use echo::embedded_graphics::pixelcolor::BinaryColor;
use echo::embedded_graphics::prelude::*;
use echo::{glyph_width, ConnId, Event, Layout, Screen, Utf8Decoder, COLUMNS, HEIGHT, ROWS, WIDTH};

use crate::Bytes;

/// A 128x64 panel that fails on any pixel outside it.
struct Panel;

impl OriginDimensions for Panel {
    fn size(&self) -> Size {
        Size::new(WIDTH, HEIGHT)
    }
}

impl DrawTarget for Panel {
    type Color = BinaryColor;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<BinaryColor>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        for Pixel(point, _) in pixels {
            assert!(
                (0..WIDTH as i32).contains(&point.x) && (0..HEIGHT as i32).contains(&point.y),
                "drew off the panel at {point:?}"
            );
        }
        Ok(())
    }
}

/// The input as chunks (at most 16): each a length byte, then that many bytes.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut bytes = Bytes::new(data);
    let mut chunks = Vec::new();
    while !bytes.is_empty() && chunks.len() < 16 {
        let len = usize::from(bytes.byte());
        chunks.push(bytes.take(len));
    }
    chunks
}

/// The decoder, fed in chunks, agrees with `from_utf8_lossy` of the whole.
pub fn check_decoder(data: &[u8]) {
    let mut decoder = Utf8Decoder::new();
    let mut decoded = String::new();
    let mut whole = Vec::new();
    for chunk in chunks(data) {
        decoder.decode(chunk, |c| decoded.push(c));
        whole.extend_from_slice(chunk);
    }
    decoder.finish(|c| decoded.push(c));
    assert_eq!(decoded, String::from_utf8_lossy(&whole));
}

type ScreenEvent<'a> = Event<'a, ()>;

fn received<L: Layout>(screen: &mut Screen<L>, conn: u32, bytes: &[u8]) {
    screen.update(&ScreenEvent::Received {
        conn: ConnId(conn),
        bytes,
    });
}

/// What the screen shows of a message of its own: the visible characters of the last `window`
/// bytes, from the first character boundary in them, decoded by `from_utf8_lossy`, without a
/// character still unfinished at the end (the decoder waits for its other bytes).
fn visible_text(message: &[u8], window: usize, newline: char) -> Vec<char> {
    let mut start = message.len().saturating_sub(window);
    if start > 0 {
        start += message[start..]
            .iter()
            .take(3)
            .take_while(|b| **b & 0xC0 == 0x80)
            .count();
    }
    // A sequence cut short at the very end is unfinished (from_utf8 says: no error length).
    let mut end = message.len();
    let mut from = start;
    while let Err(e) = std::str::from_utf8(&message[from..]) {
        match e.error_len() {
            Some(len) => from += e.valid_up_to() + len,
            None => {
                end = from + e.valid_up_to();
                break;
            }
        }
    }
    String::from_utf8_lossy(&message[start..end])
        .chars()
        .filter_map(|c| match c {
            '\n' => Some(newline),
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Messages on a few connections to the server's and the client's screens, each drawn after
/// every message; the server's row then shows the end of the last message that fits.
pub fn check_screen(data: &[u8]) {
    let mut server = Screen::server();
    let mut client = Screen::client();
    let mut last = None;
    for (index, chunk) in chunks(data).into_iter().enumerate() {
        // The chunk's first byte picks the connection; a new connection each time shows a
        // message that starts afresh.
        let conn = u32::from(chunk.first().copied().unwrap_or(0) % 3);
        received(&mut server, conn, chunk);
        received(&mut client, conn, chunk);
        server.draw(&mut Panel).unwrap();
        client.draw(&mut Panel).unwrap();
        last = Some((index as u32 + 100, chunk));
    }
    let Some((conn, message)) = last else { return };

    // The last message again, on a connection of its own: nothing held from before.
    received(&mut server, conn, message);
    received(&mut client, conn, message);
    server.draw(&mut Panel).unwrap();
    client.draw(&mut Panel).unwrap();
    let expected = visible_text(message, COLUMNS * 4, ' ');
    let shown: Vec<char> = server.line(echo::SERVER_TEXT_ROW).chars().collect();
    if !expected.is_empty() {
        assert!(
            expected.ends_with(&shown),
            "the row shows {shown:?}, not the end of {expected:?}"
        );
        // Nothing more fits: the character before what is shown would overflow the row.
        if shown.len() < expected.len() {
            let before = expected[expected.len() - shown.len() - 1];
            let width: u32 = shown.iter().map(|c| glyph_width(*c)).sum();
            assert!(
                width + glyph_width(before) > WIDTH,
                "{before:?} would have fitted before {shown:?}"
            );
        }
    }

    // The client shows the end of the text across its rows, newlines aside.
    let expected: String = visible_text(message, ROWS * COLUMNS * 4, '\n')
        .into_iter()
        .filter(|c| *c != '\n')
        .collect();
    let shown: String = (0..ROWS).map(|row| client.line(row).to_string()).collect();
    if !expected.is_empty() {
        assert!(
            expected.ends_with(&shown),
            "the client shows {shown:?}, not the end of {expected:?}"
        );
    }
}
