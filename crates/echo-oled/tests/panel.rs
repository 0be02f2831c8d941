//! The driver against models of the two controllers that decode the I2C stream into their RAM:
//! what the viewer sees is exactly the screen's own frame, and an update sends only its pages.

mod model;

use std::cell::Cell;
use std::convert::Infallible;

use echo::{ConnId, Event, Layout, Screen};
use echo_oled::{Controller, CountingI2c, Oled, Sh1106, Ssd1306, HEIGHT, WIDTH};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, Operation, SevenBitAddress};
use model::{Kind, Model};

type TestEvent<'a> = Event<'a, ()>;

/// The reference: the screen drawn on a plain 128x64 array.
struct Frame([[bool; WIDTH]; HEIGHT]);

impl OriginDimensions for Frame {
    fn size(&self) -> Size {
        Size::new(WIDTH as u32, HEIGHT as u32)
    }
}

impl DrawTarget for Frame {
    type Color = BinaryColor;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<BinaryColor>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        for Pixel(point, color) in pixels {
            self.0[point.y as usize][point.x as usize] = color.is_on();
        }
        Ok(())
    }
}

fn frame_of<L: Layout + Clone>(screen: &Screen<L>) -> Frame {
    let mut frame = Frame([[false; WIDTH]; HEIGHT]);
    let mut copy = screen.clone();
    copy.invalidate();
    copy.draw(&mut frame).unwrap();
    frame
}

/// Every visible pixel of the model equals the reference.
fn assert_shows(model: &Model, frame: &Frame) {
    let mut lit = 0;
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            assert_eq!(model.visible(x, y), frame.0[y][x], "pixel {x},{y}");
            lit += usize::from(frame.0[y][x]);
        }
    }
    assert!(lit > 100, "the screen shows text");
}

fn server_screen() -> Screen<echo::ServerLayout> {
    let mut screen = Screen::server();
    screen.update(&TestEvent::Listening {
        local: "192.168.4.1:5001".parse().unwrap(),
    });
    screen.update(&TestEvent::Opened {
        conn: ConnId(0),
        peer: "192.168.4.2:50000".parse().unwrap(),
        open: 1,
    });
    screen.update(&TestEvent::Received {
        conn: ConnId(0),
        bytes: b"hello MicroPython",
    });
    screen
}

/// A panel of `kind` driven as `C`, initialised and showing the server screen.
fn shown<C: Controller>(model: &Model) -> (Oled<&Model, C>, Screen<echo::ServerLayout>) {
    let mut oled: Oled<&Model, C> = Oled::new(model);
    oled.init().unwrap();
    let mut screen = server_screen();
    screen.draw(&mut oled).unwrap();
    oled.flush().unwrap();
    (oled, screen)
}

fn init_powers_the_panel_on_upright<C: Controller>(kind: Kind) {
    let model = Model::new(kind);
    let mut oled: Oled<&Model, C> = Oled::new(&model);
    oled.init().unwrap();
    let state = model.state();
    assert!(state.display_on && state.power_on);
    assert!(state.segment_remap && state.com_reversed);
    if kind == Kind::Ssd1306 {
        assert_eq!(state.addressing, Some(0x02), "page addressing");
    }
    assert_eq!(state.data_per_page, [0; 8], "init sends no pixels");
}

#[test]
fn init_powers_the_sh1106_on_upright() {
    init_powers_the_panel_on_upright::<Sh1106>(Kind::Sh1106);
}

#[test]
fn init_powers_the_ssd1306_on_upright_in_page_addressing() {
    init_powers_the_panel_on_upright::<Ssd1306>(Kind::Ssd1306);
}

#[test]
fn a_full_frame_on_the_sh1106_is_the_screen_two_columns_in() {
    let model = Model::new(Kind::Sh1106);
    let (_oled, screen) = shown::<Sh1106>(&model);
    assert_shows(&model, &frame_of(&screen));
    let state = model.state();
    // Every page of the 128 visible columns was written once, the 4 hidden ones never.
    assert_eq!(state.data_per_page, [128; 8]);
    assert_eq!(state.data_per_column[..2], [0, 0]);
    assert_eq!(state.data_per_column[2..130], [8; 128]);
    assert_eq!(state.data_per_column[130..], [0, 0]);
}

#[test]
fn a_full_frame_on_the_ssd1306_is_the_screen() {
    let model = Model::new(Kind::Ssd1306);
    let (_oled, screen) = shown::<Ssd1306>(&model);
    assert_shows(&model, &frame_of(&screen));
    assert_eq!(model.state().data_per_page, [128; 8]);
}

fn a_one_row_update_sends_only_its_pages<C: Controller>(kind: Kind) {
    let model = Model::new(kind);
    let (mut oled, mut screen) = shown::<C>(&model);
    model.reset_counters();
    screen.update(&TestEvent::Received {
        conn: ConnId(0),
        bytes: b"bye",
    });
    screen.draw(&mut oled).unwrap();
    oled.flush().unwrap();
    assert_shows(&model, &frame_of(&screen));
    let state = model.state();
    let sent = state.data_per_page;
    assert_eq!(sent[..6], [0; 6], "only the bottom row's pages");
    // The columns that changed: the old text's (17 characters of 6 px) at most.
    assert!(sent[6] > 0 && sent[6] <= 17 * 6, "{sent:?}");
    assert!(sent[7] <= 17 * 6, "{sent:?}");
    assert_eq!(state.transactions, 2 * usize::from(sent[7] > 0) + 2);
}

#[test]
fn a_one_row_update_on_the_sh1106_sends_only_its_pages() {
    a_one_row_update_sends_only_its_pages::<Sh1106>(Kind::Sh1106);
}

#[test]
fn a_one_row_update_on_the_ssd1306_sends_only_its_pages() {
    a_one_row_update_sends_only_its_pages::<Ssd1306>(Kind::Ssd1306);
}

#[test]
fn flush_page_sends_one_page_at_most_and_that_takes_under_4_ms_at_400_khz() {
    let bus = CountingI2c::new();
    let mut oled: Oled<&CountingI2c, Sh1106> = Oled::new(&bus);
    oled.init().unwrap();
    let mut pages = 0;
    loop {
        bus.reset();
        let more = oled.flush_page().unwrap();
        pages += 1;
        assert_eq!(bus.data_bytes(), 128, "one full page");
        assert_eq!(bus.transactions(), 2, "its address, then its columns");
        let took = bus.bus_time(400_000);
        assert!(took.as_micros() < 3_500, "{took:?}");
        if !more {
            break;
        }
    }
    assert_eq!(pages, 8);
    bus.reset();
    assert!(!oled.flush_page().unwrap());
    assert_eq!(bus.transactions(), 0, "nothing left to send");
}

#[test]
fn pixels_drawn_back_as_they_were_send_nothing() {
    let bus = CountingI2c::new();
    let mut oled: Oled<&CountingI2c, Ssd1306> = Oled::new(&bus);
    oled.init().unwrap();
    oled.flush().unwrap();
    let area = Rectangle::new(Point::new(0, 0), Size::new(128, 64));
    oled.fill_solid(&area, BinaryColor::Off).unwrap();
    assert!(!oled.is_dirty(), "already dark");
    // Off the panel: ignored.
    Pixel(Point::new(-1, 70), BinaryColor::On)
        .draw(&mut oled)
        .unwrap();
    assert!(!oled.is_dirty());
    Pixel(Point::new(127, 63), BinaryColor::On)
        .draw(&mut oled)
        .unwrap();
    assert!(oled.pixel(127, 63));
    bus.reset();
    oled.flush().unwrap();
    assert_eq!(bus.data_bytes(), 1, "one column of the last page");
}

/// A bus whose next `failures` transactions fail.
struct Flaky {
    failures: Cell<usize>,
    sent: Cell<usize>,
}

impl ErrorType for &Flaky {
    type Error = ErrorKind;
}

impl I2c<SevenBitAddress> for &Flaky {
    fn transaction(
        &mut self,
        _: SevenBitAddress,
        _: &mut [Operation<'_>],
    ) -> Result<(), ErrorKind> {
        if self.failures.get() > 0 {
            self.failures.set(self.failures.get() - 1);
            return Err(ErrorKind::Other);
        }
        self.sent.set(self.sent.get() + 1);
        Ok(())
    }
}

#[test]
fn a_page_that_failed_to_go_is_sent_again() {
    let bus = Flaky {
        failures: Cell::new(0),
        sent: Cell::new(0),
    };
    let mut oled: Oled<&Flaky, Ssd1306> = Oled::new(&bus);
    oled.init().unwrap();
    oled.flush().unwrap();
    Pixel(Point::new(5, 5), BinaryColor::On)
        .draw(&mut oled)
        .unwrap();
    bus.failures.set(1);
    assert_eq!(oled.flush_page(), Err(ErrorKind::Other));
    assert!(oled.is_dirty(), "the page is still to be sent");
    let sent = bus.sent.get();
    assert_eq!(oled.flush_page(), Ok(false));
    assert_eq!(bus.sent.get(), sent + 2, "its address, then its column");
    assert!(!oled.is_dirty());
}
