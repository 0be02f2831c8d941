//! The pictures of the OLED in the README (`docs/oled-*.png`), drawn by the project: each is
//! the screen after a few events, as `--display png:PATH` writes it. The test fails when a
//! committed picture is not what the code draws today; to write them anew:
//! `ECHO_WRITE_PICTURES=1 cargo test -p echo-std --test pictures`.
#![cfg(feature = "cjk")]

use std::path::PathBuf;

use echo::{ConnId, Event, Layout, Screen};
use echo_std::display::{encode_png, FrameBuffer, DEFAULT_PNG_SCALE};

type ScreenEvent<'a> = Event<'a, ()>;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn server(text: &str) -> Screen<echo::ServerLayout> {
    let mut screen = Screen::server();
    for event in [
        ScreenEvent::Listening {
            local: "192.168.4.1:5001".parse().unwrap(),
        },
        ScreenEvent::Opened {
            conn: ConnId(0),
            peer: "192.168.4.2:50000".parse().unwrap(),
            open: 1,
        },
        ScreenEvent::Received {
            conn: ConnId(0),
            bytes: text.as_bytes(),
        },
    ] {
        screen.update(&event);
    }
    screen
}

fn client(text: &str) -> Screen<echo::ClientLayout> {
    let mut screen = Screen::client();
    for event in [
        ScreenEvent::Opened {
            conn: ConnId(0),
            peer: "192.168.4.1:5001".parse().unwrap(),
            open: 1,
        },
        ScreenEvent::Received {
            conn: ConnId(0),
            bytes: text.as_bytes(),
        },
    ] {
        screen.update(&event);
    }
    screen
}

fn png<L: Layout>(mut screen: Screen<L>) -> Vec<u8> {
    let mut frame = FrameBuffer::new();
    screen.draw(&mut frame).unwrap();
    encode_png(&frame, DEFAULT_PNG_SCALE).unwrap()
}

#[test]
fn the_readme_pictures_are_what_the_screen_draws() {
    let pictures = [
        ("oled-server.png", png(server("hello MicroPython"))),
        ("oled-server-chinese.png", png(server("你好，世界"))),
        (
            "oled-client.png",
            png(client("hello MicroPython, I am TCP Client")),
        ),
        (
            "oled-client-chinese.png",
            png(client("你好，世界！\n我是 TCP Client，\n收到请回答。")),
        ),
    ];
    let write = std::env::var_os("ECHO_WRITE_PICTURES").is_some();
    let mut stale = Vec::new();
    for (name, drawn) in pictures {
        let path = docs().join(name);
        if write {
            std::fs::write(&path, &drawn).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&drawn[..]) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what the screen draws; write them anew with \
         ECHO_WRITE_PICTURES=1 cargo test -p echo-std --test pictures"
    );
}
