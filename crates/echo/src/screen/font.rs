//! How characters look on the panel: how wide each is and how it is drawn in a 16-px row.
//!
//! ISO-8859-1 (Latin-1) in the 6x13 monospace font of embedded-graphics, centred in the row.
//! With the `cjk` feature, the other characters in the WenQuanYi 16-px GB2312 set of u8g2:
//! Chinese (16 px wide, the row's full height, like the tutorial board's `oled.DispChar`),
//! full-width punctuation, Greek, Cyrillic. A character no font has shows as a hollow box, and
//! invalid UTF-8 (U+FFFD) as a filled one, each in a 6-px cell.

use embedded_graphics::mono_font::iso_8859_1::FONT_6X13;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics::text::{renderer::TextRenderer, Baseline};

use super::{ROW_HEIGHT, WIDTH};

/// The cell of a Latin-1 character, and of a box.
const CELL: Size = FONT_6X13.character_size;
/// Vertical offset of a cell inside its row, to center the 13-px font.
pub(crate) const GLYPH_TOP: i32 = ((ROW_HEIGHT - CELL.height) / 2) as i32;

/// The most characters a row holds: the narrowest are 6 px wide.
pub(crate) const MAX_CHARS: usize = (WIDTH / CELL.width) as usize;

/// Whether the 6x13 font has `c`.
fn latin(c: char) -> bool {
    c < '\u{100}'
}

/// Width of `c` in pixels.
pub(crate) fn advance(c: char) -> u32 {
    if latin(c) {
        return CELL.width;
    }
    wide::advance(c).unwrap_or(CELL.width)
}

/// Draws `c` with its left edge at `x` in the row whose top is `top`. Nothing leaves the row.
///
/// One glyph at a time and with plain fills: the `Text` drawable and styled rectangles would
/// bring line splitting and stroke rendering that a row of text never needs.
pub(crate) fn draw_char<D>(target: &mut D, c: char, x: i32, top: i32) -> Result<(), D::Error>
where
    D: DrawTarget<Color = BinaryColor>,
{
    let cell = Point::new(x, top + GLYPH_TOP);
    if latin(c) {
        let style = MonoTextStyle::new(&FONT_6X13, BinaryColor::On);
        let mut utf8 = [0; 4];
        style.draw_string(c.encode_utf8(&mut utf8), cell, Baseline::Top, target)?;
        return Ok(());
    }
    if wide::draw(target, c, x, top)? {
        return Ok(());
    }
    draw_box(target, c, cell)
}

/// Draws the box that stands for `c` in the cell at `cell` (its top-left corner): filled for
/// U+FFFD, hollow for a character the fonts lack.
fn draw_box<D>(target: &mut D, c: char, cell: Point) -> Result<(), D::Error>
where
    D: DrawTarget<Color = BinaryColor>,
{
    let outer = CELL - Size::new(2, 4);
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
    Ok(())
}

/// Characters beyond Latin-1: none without the `cjk` feature.
#[cfg(not(feature = "cjk"))]
mod wide {
    use embedded_graphics::pixelcolor::BinaryColor;
    use embedded_graphics::prelude::DrawTarget;

    pub(super) fn advance(_c: char) -> Option<u32> {
        None
    }

    pub(super) fn draw<D>(_target: &mut D, _c: char, _x: i32, _top: i32) -> Result<bool, D::Error>
    where
        D: DrawTarget<Color = BinaryColor>,
    {
        Ok(false)
    }
}

/// Characters beyond Latin-1 in the WenQuanYi 16-px GB2312 set of u8g2.
#[cfg(feature = "cjk")]
mod wide {
    use embedded_graphics::pixelcolor::BinaryColor;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::Rectangle;
    use u8g2_fonts::types::{FontColor, VerticalPosition};
    use u8g2_fonts::{fonts, Error, FontRenderer};

    use crate::screen::{ROW_HEIGHT, WIDTH};

    const FONT: FontRenderer = FontRenderer::new::<fonts::u8g2_font_wqy16_t_gb2312>();

    /// The baseline's distance from the row's top: the set's glyphs reach 14 px above their
    /// baseline and 2 px below, so its Chinese characters fill the 16-px row exactly.
    const BASELINE: i32 = 14;

    /// Width of `c` in pixels, if the font has it (8 to 16).
    pub(super) fn advance(c: char) -> Option<u32> {
        let dimensions = FONT.get_rendered_dimensions(c, Point::zero(), VerticalPosition::Baseline);
        dimensions.ok().map(|d| d.advance.x.unsigned_abs())
    }

    /// Draws `c` if the font has it; returns whether it did.
    pub(super) fn draw<D>(target: &mut D, c: char, x: i32, top: i32) -> Result<bool, D::Error>
    where
        D: DrawTarget<Color = BinaryColor>,
    {
        let row = Rectangle::new(Point::new(0, top), Size::new(WIDTH, ROW_HEIGHT));
        let at = Point::new(x, top + BASELINE);
        let color = FontColor::Transparent(BinaryColor::On);
        match FONT.render(
            c,
            at,
            VerticalPosition::Baseline,
            color,
            &mut target.clipped(&row),
        ) {
            Ok(_) => Ok(true),
            Err(Error::DisplayError(e)) => Err(e),
            Err(Error::GlyphNotFound(_) | Error::BackgroundColorNotSupported) => Ok(false),
        }
    }
}
