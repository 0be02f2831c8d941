//! Rows of text and how they are drawn, one character at a time in the font of
//! [`font`](super::font).

use core::fmt::{self, Write as _};

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

use super::font::{self, advance};
use super::WIDTH;

/// The most characters a row holds: 21 Latin-1 characters of 6 px; fewer when they are wide
/// (with the `cjk` feature a Chinese character takes 16 px).
pub const COLUMNS: usize = font::MAX_CHARS;

/// One row of text: as many characters as fit in [`WIDTH`](super::WIDTH) pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    chars: [char; COLUMNS],
    /// Each character's width in pixels, looked up once (a font lookup is not free).
    advances: [u8; COLUMNS],
    len: usize,
    /// Pixels the characters take, from the left.
    width: u32,
}

impl Line {
    pub(crate) const EMPTY: Line = Line {
        chars: [' '; COLUMNS],
        advances: [0; COLUMNS],
        len: 0,
        width: 0,
    };

    /// The characters of the row.
    pub fn chars(&self) -> impl Iterator<Item = char> + '_ {
        self.chars[..self.len].iter().copied()
    }

    /// Width of the text in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Whether a character `advance` pixels wide still fits on the row.
    fn fits(&self, advance: u32) -> bool {
        self.len < COLUMNS && self.width + advance <= WIDTH
    }

    /// Appends `c`; returns false (and drops it) when it does not fit.
    pub(crate) fn push(&mut self, c: char) -> bool {
        self.put(c, advance(c))
    }

    /// Appends `c`, `advance` pixels wide, if it fits.
    fn put(&mut self, c: char, advance: u32) -> bool {
        if !self.fits(advance) {
            return false;
        }
        self.chars[self.len] = c;
        self.advances[self.len] = advance as u8;
        self.len += 1;
        self.width += advance;
        true
    }

    /// Appends `c`, dropping characters from the start until it fits, so the row shows the
    /// text's end.
    pub(crate) fn push_tail(&mut self, c: char) {
        let advance = advance(c);
        let mut dropped = 0;
        while dropped < self.len && (self.len - dropped == COLUMNS || self.width + advance > WIDTH)
        {
            self.width -= u32::from(self.advances[dropped]);
            dropped += 1;
        }
        self.chars.copy_within(dropped..self.len, 0);
        self.advances.copy_within(dropped..self.len, 0);
        self.len -= dropped;
        self.put(c, advance);
    }

    /// The row holding `text`, cut at the width.
    pub(crate) fn from_fmt(text: fmt::Arguments<'_>) -> Line {
        let mut line = Line::EMPTY;
        let _ = line.write_fmt(text);
        line
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

/// Control characters are not drawn: `\t` becomes a space, `newline` is kept as `\n` (the
/// client wraps on it) and the rest are dropped.
pub(crate) fn visible(c: char, newline: char) -> Option<char> {
    match c {
        '\n' => Some(newline),
        '\t' => Some(' '),
        c if c.is_control() => None,
        c => Some(c),
    }
}

/// Clears `band` (the row's lit part), then draws its text.
pub(crate) fn draw_line<D>(target: &mut D, line: &Line, band: &Rectangle) -> Result<(), D::Error>
where
    D: DrawTarget<Color = BinaryColor>,
{
    target.fill_solid(band, BinaryColor::Off)?;
    let mut x = 0;
    for c in line.chars() {
        font::draw_char(target, c, x, band.top_left.y)?;
        x += advance(c) as i32;
    }
    Ok(())
}
