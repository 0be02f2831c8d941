//! Rows of text and how they are drawn: the font, the glyphs that stand for what it cannot
//! show, one row at a time.

use core::fmt::{self, Write as _};

use embedded_graphics::mono_font::iso_8859_1::FONT_6X13;
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics::text::{renderer::TextRenderer, Baseline};

use super::{ROW_HEIGHT, WIDTH};

const FONT: MonoFont<'static> = FONT_6X13;
/// Width of one character cell in pixels.
pub(crate) const CELL_WIDTH: u32 = FONT_6X13.character_size.width;
/// Characters per row.
pub const COLUMNS: usize = (WIDTH / CELL_WIDTH) as usize;
/// Vertical offset of the glyphs inside their row, to center the 13-px font.
pub(crate) const GLYPH_TOP: i32 = ((ROW_HEIGHT - FONT_6X13.character_size.height) / 2) as i32;

/// One row of text, at most [`COLUMNS`] characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    chars: [char; COLUMNS],
    len: usize,
}

impl Line {
    pub(crate) const EMPTY: Line = Line {
        chars: [' '; COLUMNS],
        len: 0,
    };

    /// The characters of the row.
    pub fn chars(&self) -> impl Iterator<Item = char> + '_ {
        self.chars[..self.len].iter().copied()
    }

    /// Width of the text in pixels.
    pub(crate) fn width(&self) -> u32 {
        self.len as u32 * CELL_WIDTH
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == COLUMNS
    }

    /// Appends `c`; returns false (and drops it) when the row is full.
    pub(crate) fn push(&mut self, c: char) -> bool {
        if self.is_full() {
            return false;
        }
        self.chars[self.len] = c;
        self.len += 1;
        true
    }

    /// Appends `c`, dropping the first character when full, so the row shows the text's end.
    pub(crate) fn push_tail(&mut self, c: char) {
        if self.is_full() {
            self.chars.copy_within(1.., 0);
            self.len -= 1;
        }
        self.push(c);
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

/// Clears `band` (the row's lit part), then draws its text; boxes stand for what the font
/// cannot show: filled for invalid UTF-8 (U+FFFD), hollow for a character outside
/// ISO-8859-1.
///
/// One glyph at a time and with plain fills: the `Text` drawable and styled rectangles would
/// bring line splitting and stroke rendering that a row of single-line text never needs.
pub(crate) fn draw_line<D>(target: &mut D, line: &Line, band: &Rectangle) -> Result<(), D::Error>
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
