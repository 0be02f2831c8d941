//! The OLED on a PC: a [`FrameBuffer`] to draw on, shown by [`TerminalDisplay`] or
//! [`PngDisplay`], at most every [`RateLimit`] interval.

mod png;
mod terminal;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::{DrawTarget, OriginDimensions, Pixel, Point, Size};

pub use self::png::{encode_png, PngDisplay, DEFAULT_PNG_SCALE};
pub use self::terminal::{TerminalDisplay, TerminalLog};

/// Width of the board's OLED in pixels.
pub const WIDTH: u32 = 128;
/// Height of the board's OLED in pixels.
pub const HEIGHT: u32 = 64;

/// How often a display is redrawn at most unless told otherwise: 20 frames a second.
pub const DEFAULT_FRAME_INTERVAL: Duration = Duration::from_millis(50);

/// The 128x64 monochrome picture of the board's OLED: an embedded-graphics
/// [`DrawTarget`], one bit a pixel, row by row, most significant bit leftmost.
#[derive(Clone, PartialEq, Eq)]
pub struct FrameBuffer {
    bits: [u8; (WIDTH * HEIGHT / 8) as usize],
}

impl FrameBuffer {
    /// An all-dark screen.
    pub const fn new() -> Self {
        Self {
            bits: [0; (WIDTH * HEIGHT / 8) as usize],
        }
    }

    /// Whether the pixel at (`x`, `y`) is lit; outside the screen nothing is.
    pub fn is_on(&self, x: u32, y: u32) -> bool {
        match Self::index(x, y) {
            Some((byte, mask)) => self.bits[byte] & mask != 0,
            None => false,
        }
    }

    /// The pixels, row by row (16 bytes a row), most significant bit leftmost: the layout of
    /// a 1-bit PNG or PBM row.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn index(x: u32, y: u32) -> Option<(usize, u8)> {
        (x < WIDTH && y < HEIGHT).then(|| (((y * WIDTH + x) / 8) as usize, 0x80 >> (x % 8)))
    }
}

impl Default for FrameBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for FrameBuffer {
    /// The picture itself, `#` for a lit pixel.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                f.write_str(if self.is_on(x, y) { "#" } else { "." })?;
            }
            f.write_str("\n")?;
        }
        Ok(())
    }
}

impl OriginDimensions for FrameBuffer {
    fn size(&self) -> Size {
        Size::new(WIDTH, HEIGHT)
    }
}

impl DrawTarget for FrameBuffer {
    type Color = BinaryColor;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(Point { x, y }, color) in pixels {
            let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y)) else {
                continue;
            };
            if let Some((byte, mask)) = Self::index(x, y) {
                match color {
                    BinaryColor::On => self.bits[byte] |= mask,
                    BinaryColor::Off => self.bits[byte] &= !mask,
                }
            }
        }
        Ok(())
    }
}

/// At most one redraw per interval, so that a busy echo never waits on its display.
#[derive(Clone, Debug)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    /// At most one redraw per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// When the next redraw is allowed (`None`: now).
    pub fn next_allowed(&self) -> Option<Instant> {
        self.last.map(|last| last + self.interval)
    }

    /// Whether a redraw is allowed at `now`.
    pub fn allows(&self, now: Instant) -> bool {
        self.next_allowed().is_none_or(|next| now >= next)
    }

    /// Records a redraw at `now`.
    pub fn record(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use embedded_graphics::primitives::{Primitive, PrimitiveStyle, Rectangle};
    use embedded_graphics::Drawable;

    use super::*;

    #[test]
    fn draws_inside_and_ignores_pixels_outside_the_screen() {
        let mut frame = FrameBuffer::new();
        Rectangle::new(Point::new(126, 62), Size::new(4, 4))
            .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
            .draw(&mut frame)
            .unwrap();
        Pixel(Point::new(-1, 3), BinaryColor::On)
            .draw(&mut frame)
            .unwrap();
        let lit: Vec<_> = (0..HEIGHT)
            .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| frame.is_on(x, y))
            .collect();
        assert_eq!(lit, [(126, 62), (127, 62), (126, 63), (127, 63)]);
        assert_eq!(frame.as_bytes()[62 * 16 + 15], 0b0000_0011);
    }

    #[test]
    fn clear_turns_every_pixel_off() {
        let mut frame = FrameBuffer::new();
        frame.clear(BinaryColor::On).unwrap();
        assert!(frame.as_bytes().iter().all(|&b| b == 0xff));
        frame.clear(BinaryColor::Off).unwrap();
        assert_eq!(frame, FrameBuffer::new());
    }

    #[test]
    fn rate_limit_allows_one_redraw_per_interval() {
        let start = Instant::now();
        let mut limit = RateLimit::new(Duration::from_millis(50));
        assert!(limit.allows(start));
        limit.record(start);
        assert!(!limit.allows(start + Duration::from_millis(49)));
        assert!(limit.allows(start + Duration::from_millis(50)));
        assert_eq!(
            limit.next_allowed(),
            Some(start + Duration::from_millis(50))
        );
    }
}
