//! Micro-benchmarks of the `echo` core, on any machine: the echo path over an in-memory
//! stack, incremental UTF-8 decoding, and drawing the screen.
//!
//! `cargo bench --bench core`

use core::convert::Infallible;
use core::net::SocketAddr;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use echo::embedded_graphics::pixelcolor::BinaryColor;
use echo::embedded_graphics::prelude::*;
use echo::{
    EchoServer, Event, Instant, Layout, LocalAddress, Role, Screen, ServerConfig, Slot, Utf8Decoder,
};
use embedded_nal::{TcpClientStack, TcpError, TcpErrorKind, TcpFullStack};

/// A stack whose peers send an endless stream and read everything at once: the cost measured
/// is the core's, plus one copy per direction.
struct MemoryStack {
    clients: usize,
    accepted: usize,
    /// Bytes each `receive` delivers at most (a TCP segment's worth).
    segment: usize,
    echoed: u64,
}

#[derive(Debug)]
struct Never;

impl TcpError for Never {
    fn kind(&self) -> TcpErrorKind {
        TcpErrorKind::Other
    }
}

const PATTERN: [u8; 1460] = {
    let mut bytes = [0u8; 1460];
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] = (i * 31 % 251) as u8;
        i += 1;
    }
    bytes
};

impl LocalAddress for MemoryStack {
    fn local_address(&self, _: &usize) -> Option<SocketAddr> {
        None
    }
}

impl TcpClientStack for MemoryStack {
    type TcpSocket = usize;
    type Error = Never;

    fn socket(&mut self) -> Result<usize, Never> {
        Ok(usize::MAX)
    }
    fn connect(&mut self, _: &mut usize, _: SocketAddr) -> nb::Result<(), Never> {
        Ok(())
    }
    fn send(&mut self, _: &mut usize, buffer: &[u8]) -> nb::Result<usize, Never> {
        self.echoed += black_box(buffer).len() as u64;
        Ok(buffer.len())
    }
    fn receive(&mut self, _: &mut usize, buffer: &mut [u8]) -> nb::Result<usize, Never> {
        let n = buffer.len().min(self.segment);
        buffer[..n].copy_from_slice(&PATTERN[..n]);
        Ok(n)
    }
    fn close(&mut self, _: usize) -> Result<(), Never> {
        Ok(())
    }
}

impl TcpFullStack for MemoryStack {
    fn bind(&mut self, _: &mut usize, _: u16) -> Result<(), Never> {
        Ok(())
    }
    fn listen(&mut self, _: &mut usize) -> Result<(), Never> {
        Ok(())
    }
    fn accept(&mut self, _: &mut usize) -> nb::Result<(usize, SocketAddr), Never> {
        if self.accepted == self.clients {
            return Err(nb::Error::WouldBlock);
        }
        self.accepted += 1;
        Ok((
            self.accepted,
            SocketAddr::from(([127, 0, 0, 1], 40000 + self.accepted as u16)),
        ))
    }
}

fn echo_path(c: &mut Criterion) {
    const TOTAL: u64 = 1 << 20;
    let mut group = c.benchmark_group("echo_path");
    group.throughput(Throughput::Bytes(TOTAL));
    for clients in [1usize, 4] {
        for buffer_size in [1024usize, 16 * 1024] {
            let id = BenchmarkId::new(
                format!("{clients}_clients"),
                format!("{buffer_size}B_buffer"),
            );
            group.bench_function(id, |b| {
                b.iter(|| {
                    let mut stack = MemoryStack {
                        clients,
                        accepted: 0,
                        segment: 1460,
                        echoed: 0,
                    };
                    let mut slots: Vec<Slot<usize>> = (0..clients).map(|_| Slot::new()).collect();
                    let mut buffer = vec![0u8; clients * buffer_size];
                    let mut server =
                        EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
                    let mut received = 0u64;
                    while stack.echoed < TOTAL {
                        server
                            .poll(&mut stack, Instant::ZERO, |event| {
                                if let Event::Received { bytes, .. } = event {
                                    received += bytes.len() as u64;
                                }
                            })
                            .unwrap();
                    }
                    assert_eq!(received, stack.echoed);
                });
            });
        }
    }
    group.finish();
}

fn utf8_decoding(c: &mut Criterion) {
    let text = "hello MicroPython, I am TCP Client — 你好, ça va? \u{1F600}\n".repeat(64);
    let bytes = text.as_bytes();
    let mut group = c.benchmark_group("utf8");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("decode_in_64_byte_chunks", |b| {
        b.iter(|| {
            let mut decoder = Utf8Decoder::new();
            let mut chars = 0usize;
            for chunk in bytes.chunks(64) {
                decoder.decode(black_box(chunk), |_| chars += 1);
            }
            chars
        })
    });
    group.finish();
}

/// A 128x64 1-bit framebuffer, the host's equivalent of the SSD1306 driver's buffer.
struct Panel([u8; 128 * 64 / 8]);

impl OriginDimensions for Panel {
    fn size(&self) -> Size {
        Size::new(128, 64)
    }
}

impl DrawTarget for Panel {
    type Color = BinaryColor;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<BinaryColor>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        for Pixel(point, color) in pixels {
            if let (Ok(x @ 0..128), Ok(y @ 0..64)) =
                (usize::try_from(point.x), usize::try_from(point.y))
            {
                let (byte, bit) = (y / 8 * 128 + x, y % 8);
                self.0[byte] = (self.0[byte] & !(1 << bit)) | (u8::from(color.is_on()) << bit);
            }
        }
        Ok(())
    }
}

fn screen_drawing(c: &mut Criterion) {
    let mut group = c.benchmark_group("screen");
    let mut panel = Panel([0; 1024]);
    let mut screen = Screen::server();
    let listening: Event<'_, ()> = Event::Listening {
        local: ([192, 168, 4, 1], 5001).into(),
    };
    screen.update(&listening);
    screen.draw(&mut panel).unwrap();
    group.bench_function("one_text_row", |b| {
        b.iter(|| {
            let received: Event<'_, ()> = Event::Received {
                conn: echo::ConnId(0),
                bytes: black_box(b"hello MicroPython!"),
            };
            screen.update(&received);
            screen.draw(&mut panel).unwrap()
        })
    });
    let message = "hello MicroPython, I am TCP Client ".repeat(30);
    group.throughput(Throughput::Bytes(1024));
    update_with_1024_received_bytes(&mut group, "server", Screen::server(), &message);
    update_with_1024_received_bytes(&mut group, "client", Screen::client(), &message);
    group.bench_function("full_screen", |b| {
        b.iter(|| {
            screen.invalidate();
            screen.draw(&mut panel).unwrap()
        })
    });
    group.finish();
}

fn update_with_1024_received_bytes<L: Layout>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut screen: Screen<L>,
    message: &str,
) {
    group.bench_function(format!("update_{name}_with_1024_received_bytes"), |b| {
        b.iter(|| {
            let received: Event<'_, ()> = Event::Received {
                conn: echo::ConnId(0),
                bytes: black_box(&message.as_bytes()[..1024]),
            };
            screen.update(&received);
        })
    });
}

/// Bytes the panel driver (`echo-oled`, SSD1306; the SH1106 takes the same bytes) puts on the
/// I2C bus for a received line and for a full frame (counted, not timed), printed as a table;
/// then the time of drawing and flushing a line.
fn panel_bytes(c: &mut Criterion) {
    use echo_oled::{CountingI2c, Oled, Ssd1306};

    let bus = CountingI2c::new();
    let mut display: Oled<_, Ssd1306> = Oled::new(&bus);
    display.init().unwrap();
    let mut screen = Screen::server();
    let listening: Event<'_, ()> = Event::Listening {
        local: ([192, 168, 4, 1], 5001).into(),
    };
    screen.update(&listening);
    let mut flushed = |screen: &mut Screen<_>, text: &[u8]| {
        if !text.is_empty() {
            let received: Event<'_, ()> = Event::Received {
                conn: echo::ConnId(0),
                bytes: text,
            };
            screen.update(&received);
        }
        bus.reset();
        screen.draw(&mut display).unwrap();
        display.flush().unwrap();
        bus.wire_bytes()
    };
    // After power-on every page goes out: the full frame.
    let full = flushed(&mut screen, b"");
    let full_width = flushed(&mut screen, b"hello MicroPython, I am TCP Client");
    flushed(&mut screen, b"hello");
    let short = flushed(&mut screen, b"hello");
    println!();
    println!(
        "| panel update (echo-oled, I2C) | bytes on the bus | share of a full frame | target |"
    );
    println!("|---|---:|---:|---|");
    println!("| full frame | {full} | 100.0% | |");
    for (what, bytes) in [
        ("full-width received line (21 chars)", full_width),
        ("short received line (5 chars)", short),
    ] {
        let share = 100.0 * bytes as f64 / full as f64;
        println!(
            "| {what} | {bytes} | {share:.1}% | <= 25% {} |",
            if share <= 25.0 { "yes" } else { "NO" }
        );
    }
    println!();

    c.bench_function("panel/draw_and_flush_a_received_line", |b| {
        let bus = CountingI2c::new();
        let mut display: Oled<_, Ssd1306> = Oled::new(&bus);
        display.init().unwrap();
        let mut screen = Screen::server();
        b.iter(|| {
            let received: Event<'_, ()> = Event::Received {
                conn: echo::ConnId(0),
                bytes: black_box(b"hello MicroPython"),
            };
            screen.update(&received);
            screen.draw(&mut display).unwrap();
            display.flush().unwrap();
        })
    });
}

criterion_group!(
    benches,
    echo_path,
    utf8_decoding,
    screen_drawing,
    panel_bytes
);
criterion_main!(benches);
