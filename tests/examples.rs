//! The tutorial's two examples run as a user runs them: the server example echoes a real
//! client, and the client example greets a test server and echoes what it is sent. Each on
//! both engines: `tcp_server` and `tcp_client` (non-blocking), `tcp_server_async` and
//! `tcp_client_async`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[path = "../crates/echo-std/tests/common/port.rs"]
mod port;
use port::free_port;

const PATIENCE: Duration = Duration::from_secs(10);

/// For each `name(example)`, a module `name` with a test for `example` (`name::nb`) and one for
/// `example_async` (`name::async_io`).
macro_rules! for_both_engines {
    ($($name:ident($example:literal)),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn nb() {
                    super::$name($example)
                }

                #[test]
                fn async_io() {
                    super::$name(concat!($example, "_async"))
                }
            }
        )*
    };
}

for_both_engines! {
    tcp_server_echoes_a_client("tcp_server"),
    tcp_server_shows_this_machines_address_and_port_like_the_tutorial("tcp_server"),
    tcp_client_greets_and_echoes_until_the_server_closes("tcp_client"),
}

/// An example's binary: `cargo test` builds the examples next to the test binaries' folder.
fn example(name: &str) -> Command {
    let mut path: PathBuf = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    let path = path.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        path.display()
    );
    let mut command = Command::new(path);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Kills the example when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tcp_server_echoes_a_client(name: &str) {
    let port = free_port();
    let _server = Running(example(name).arg(port.to_string()).spawn().unwrap());
    let give_up = Instant::now() + PATIENCE;
    let mut stream = loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(stream) => break stream,
            Err(e) if Instant::now() > give_up => panic!("the example never listened: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    };
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let message = "hello 你好 \u{1F600}".as_bytes();
    stream.write_all(message).unwrap();
    let mut echo = vec![0; message.len()];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo, message);
}

fn tcp_server_shows_this_machines_address_and_port_like_the_tutorial(name: &str) {
    use echo::{Event, Screen};
    use echo_std::display::{encode_png, FrameBuffer, DEFAULT_PNG_SCALE};

    let port = free_port();
    let png = std::env::temp_dir().join(format!("{name}-{}.png", std::process::id()));
    let _server = Running(
        example(name)
            .arg(port.to_string())
            .env("ECHO_DISPLAY", format!("png:{}", png.display()))
            .spawn()
            .unwrap(),
    );
    // What the tutorial shows: `sta.ifconfig()[0]` and the port, then `accepting.....`.
    let own = echo_std::stack::own_address(Ipv4Addr::UNSPECIFIED.into());
    assert!(!own.is_unspecified());
    let mut screen = Screen::server();
    let listening: Event<'_, ()> = Event::Listening {
        local: (own, port).into(),
    };
    screen.update(&listening);
    assert_eq!(screen.line(0).to_string(), format!("{own}:{port}"));
    assert_eq!(screen.line(1).to_string(), "accepting.....");
    let mut frame = FrameBuffer::new();
    screen.draw(&mut frame).unwrap();
    let expected = encode_png(&frame, DEFAULT_PNG_SCALE).unwrap();

    let give_up = Instant::now() + PATIENCE;
    loop {
        match std::fs::read(&png) {
            Ok(shown) if shown == expected => break,
            _ if Instant::now() > give_up => panic!(
                "{} never showed {own}:{port} and accepting.....",
                png.display()
            ),
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
    let _ = std::fs::remove_file(&png);
}

fn tcp_client_greets_and_echoes_until_the_server_closes(name: &str) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let address = listener.local_addr().unwrap();
    let mut client = Running(example(name).arg(address.to_string()).spawn().unwrap());
    listener.set_nonblocking(true).unwrap();
    let give_up = Instant::now() + PATIENCE;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if Instant::now() < give_up => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("the client example never connected: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let greeting = b"hello MicroPython, I am TCP Client";
    let mut received = vec![0; greeting.len()];
    stream.read_exact(&mut received).unwrap();
    assert_eq!(received, greeting);
    stream.write_all(b"ping").unwrap();
    let mut echo = [0; 4];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    drop(stream);
    let give_up = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = client.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < give_up, "the client example did not exit");
        thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
}
