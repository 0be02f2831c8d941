//! The tutorial board's 128x64 monochrome OLED on an embedded-hal 1.0 I2C bus: [`Oled`], an
//! embedded-graphics [`DrawTarget`] that keeps the picture in RAM and sends the panel only the
//! columns that changed, page by page.
//!
//! - [`Oled`]: the frame buffer and the flush. [`Oled::flush`] sends every changed page;
//!   [`Oled::flush_page`] sends one, so that a loop that must not stall (an echo server) spends
//!   at most one page on the bus per turn (about 3.5 ms at 400 kHz for a full page).
//! - [`Controller`]: [`Sh1106`] (the mPython board's panel: 132-column RAM, the visible 128
//!   start at column 2, page addressing only) or [`Ssd1306`] (the common 0.96" modules, driven
//!   in its page addressing mode so that both panels take the same stream).
//! - [`CountingI2c`]: a bus with no device that counts what a flush puts on the wire, for
//!   tests and benchmarks.
//!
//! Both controllers take the same bytes: a command transaction `0x00, 0xB0 | page, column low
//! nibble, 0x10 | column high nibble`, then a data transaction `0x40, pixels...` with one byte
//! per column, bit 0 at the top of the page. `no_std`, no allocation, no `unsafe`.
//!
//! ```
//! use echo_oled::{CountingI2c, Oled, Sh1106};
//! use embedded_graphics_core::{pixelcolor::BinaryColor, prelude::*, primitives::Rectangle};
//!
//! let bus = CountingI2c::new();
//! let mut oled: Oled<_, Sh1106> = Oled::new(&bus);
//! oled.init().unwrap();
//! oled.flush().unwrap(); // the panel's RAM is unknown after power-on: the whole frame goes
//! bus.reset();
//! oled.fill_solid(&Rectangle::new(Point::new(0, 48), Size::new(10, 16)), BinaryColor::On)
//!     .unwrap();
//! assert!(oled.flush_page().unwrap(), "page 6 went, page 7 is left");
//! assert!(!oled.flush_page().unwrap());
//! assert_eq!(bus.data_bytes(), 20, "10 columns of 2 pages");
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod counting;

use core::marker::PhantomData;

use embedded_graphics_core::pixelcolor::BinaryColor;
use embedded_graphics_core::prelude::{DrawTarget, OriginDimensions, Pixel, Size};
use embedded_hal::i2c::{I2c, Operation};

pub use counting::CountingI2c;

/// Width of the panel in pixels.
pub const WIDTH: usize = 128;
/// Height of the panel in pixels.
pub const HEIGHT: usize = 64;
/// 8-pixel-high rows of the panel's RAM.
pub const PAGES: usize = HEIGHT / 8;
/// The usual I2C address of these panels (SA0 low), the tutorial board's.
pub const DEFAULT_ADDRESS: u8 = 0x3C;

/// Control byte before a stream of commands.
const COMMANDS: u8 = 0x00;
/// Control byte before a stream of display data.
const DATA: u8 = 0x40;

/// The panel's controller: where the visible columns are in its RAM and how it is powered on.
pub trait Controller {
    /// The RAM column of the leftmost visible pixel.
    const COLUMN_OFFSET: u8;
    /// Commands that power the panel on, upright (segment remap and reversed COM scan, so
    /// that frame buffer column `x`, bit `y` is the pixel at `x`, `y`), in page addressing.
    const INIT: &'static [u8];
}

/// The SH1106: 132 RAM columns of which the panel shows 2 to 129; page addressing only. The
/// mPython board's 1.3" panel (its MicroPython calls it "SSD1106").
#[derive(Clone, Copy, Debug)]
pub enum Sh1106 {}

impl Controller for Sh1106 {
    const COLUMN_OFFSET: u8 = 2;
    const INIT: &'static [u8] = &[
        0xAE, // display off
        0xD5, 0x80, // clock divide ratio 1, oscillator frequency default
        0xA8, 0x3F, // multiplex ratio: 64 rows
        0xD3, 0x00, // no display offset
        0x40, // start line 0
        0xAD, 0x8B, // DC-DC converter on
        0xA1, // segment remap: column 0 on the left
        0xC8, // COM scan from the last row: row 0 at the top
        0xDA, 0x12, // COM pins: alternative configuration
        0x81, 0x80, // contrast
        0xD9, 0xF1, // pre-charge 1, discharge 15 clocks
        0xDB, 0x40, // VCOM deselect level
        0xA4, // show the RAM
        0xA6, // not inverted
        0xAF, // display on
    ];
}

/// The SSD1306: 128 RAM columns, all visible; driven in its page addressing mode. The common
/// 0.96" modules.
#[derive(Clone, Copy, Debug)]
pub enum Ssd1306 {}

impl Controller for Ssd1306 {
    const COLUMN_OFFSET: u8 = 0;
    const INIT: &'static [u8] = &[
        0xAE, // display off
        0xD5, 0x80, // clock divide ratio 1, oscillator frequency default
        0xA8, 0x3F, // multiplex ratio: 64 rows
        0xD3, 0x00, // no display offset
        0x40, // start line 0
        0x8D, 0x14, // charge pump on
        0x20, 0x02, // page addressing mode
        0xA1, // segment remap: column 0 on the left
        0xC8, // COM scan from the last row: row 0 at the top
        0xDA, 0x12, // COM pins: alternative configuration
        0x81, 0xCF, // contrast
        0xD9, 0xF1, // pre-charge 1, discharge 15 clocks
        0xDB, 0x40, // VCOM deselect level
        0x2E, // no scrolling
        0xA4, // show the RAM
        0xA6, // not inverted
        0xAF, // display on
    ];
}

/// The columns of one page that changed since it was last sent: `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Changed {
    first: u8,
    last: u8,
}

impl Changed {
    const ALL: Changed = Changed {
        first: 0,
        last: WIDTH as u8 - 1,
    };

    fn widen(this: Option<Changed>, column: u8) -> Changed {
        match this {
            None => Changed {
                first: column,
                last: column,
            },
            Some(changed) => Changed {
                first: changed.first.min(column),
                last: changed.last.max(column),
            },
        }
    }
}

/// A 128x64 OLED behind `I`, driven by controller `C`: a frame buffer to draw on with
/// embedded-graphics, and flushes that send only what changed.
///
/// Drawing never touches the bus. A pixel whose value changes marks its column of its page;
/// a flush sends, per changed page, the columns from the first to the last changed one.
pub struct Oled<I, C> {
    i2c: I,
    address: u8,
    /// Page-major: byte `page * WIDTH + x` holds the 8 pixels of column `x` in `page`, bit 0
    /// at the top, as the panel's RAM does.
    frame: [u8; WIDTH * PAGES],
    changed: [Option<Changed>; PAGES],
    controller: PhantomData<C>,
}

impl<I, C> Oled<I, C>
where
    I: I2c,
    C: Controller,
{
    /// The panel at [`DEFAULT_ADDRESS`] on `i2c`; call [`init`](Self::init) first.
    pub fn new(i2c: I) -> Self {
        Oled::with_address(i2c, DEFAULT_ADDRESS)
    }

    /// The panel at `address` on `i2c`.
    pub fn with_address(i2c: I, address: u8) -> Self {
        Oled {
            i2c,
            address,
            frame: [0; WIDTH * PAGES],
            changed: [Some(Changed::ALL); PAGES],
            controller: PhantomData,
        }
    }

    /// Powers the panel on. Its RAM holds anything after power-on, so the next flush sends
    /// the whole frame.
    pub fn init(&mut self) -> Result<(), I::Error> {
        self.changed = [Some(Changed::ALL); PAGES];
        self.commands(C::INIT)
    }

    /// Whether the panel shows something other than the frame buffer.
    pub fn is_dirty(&self) -> bool {
        self.changed.iter().any(Option::is_some)
    }

    /// Sends every page that changed.
    pub fn flush(&mut self) -> Result<(), I::Error> {
        while self.flush_page()? {}
        Ok(())
    }

    /// Sends the changed columns of one page (the topmost that changed); returns whether
    /// other pages are still to be sent. On a bus error the page stays to be sent.
    pub fn flush_page(&mut self) -> Result<bool, I::Error> {
        let Some(page) = self.changed.iter().position(Option::is_some) else {
            return Ok(false);
        };
        let Some(Changed { first, last }) = self.changed[page].take() else {
            return Ok(false);
        };
        if let Err(e) = self.send_page(page, first, last) {
            self.changed[page] = Some(Changed { first, last });
            return Err(e);
        }
        Ok(self.is_dirty())
    }

    /// The pixel at `x`, `y` in the frame buffer (off outside the panel).
    pub fn pixel(&self, x: usize, y: usize) -> bool {
        x < WIDTH && y < HEIGHT && self.frame[y / 8 * WIDTH + x] & (1 << (y % 8)) != 0
    }

    /// The bus, back.
    pub fn release(self) -> I {
        self.i2c
    }

    fn send_page(&mut self, page: usize, first: u8, last: u8) -> Result<(), I::Error> {
        let column = first + C::COLUMN_OFFSET;
        self.commands(&[0xB0 | page as u8, column & 0x0F, 0x10 | column >> 4])?;
        let start = page * WIDTH + usize::from(first);
        let end = page * WIDTH + usize::from(last);
        // Adjacent writes of one transaction go out as one stream (embedded-hal's contract):
        // the control byte, then the columns, with no copy into a bigger buffer.
        self.i2c.transaction(
            self.address,
            &mut [
                Operation::Write(&[DATA]),
                Operation::Write(&self.frame[start..=end]),
            ],
        )
    }

    fn commands(&mut self, commands: &[u8]) -> Result<(), I::Error> {
        self.i2c.transaction(
            self.address,
            &mut [Operation::Write(&[COMMANDS]), Operation::Write(commands)],
        )
    }
}

impl<I, C> OriginDimensions for Oled<I, C> {
    fn size(&self) -> Size {
        Size::new(WIDTH as u32, HEIGHT as u32)
    }
}

impl<I, C> DrawTarget for Oled<I, C>
where
    I: I2c,
    C: Controller,
{
    type Color = BinaryColor;
    type Error = core::convert::Infallible;

    /// Pixels outside the panel are ignored, as embedded-graphics expects of a display.
    fn draw_iter<P>(&mut self, pixels: P) -> Result<(), Self::Error>
    where
        P: IntoIterator<Item = Pixel<BinaryColor>>,
    {
        for Pixel(point, color) in pixels {
            let (Ok(x), Ok(y)) = (usize::try_from(point.x), usize::try_from(point.y)) else {
                continue;
            };
            if x >= WIDTH || y >= HEIGHT {
                continue;
            }
            let (page, bit) = (y / 8, 1 << (y % 8));
            let byte = &mut self.frame[page * WIDTH + x];
            let old = *byte;
            if color.is_on() {
                *byte |= bit;
            } else {
                *byte &= !bit;
            }
            if *byte != old {
                self.changed[page] = Some(Changed::widen(self.changed[page], x as u8));
            }
        }
        Ok(())
    }
}
