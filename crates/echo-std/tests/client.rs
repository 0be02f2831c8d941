//! `echo-std client` against test servers: greeting, echo, exit codes.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::port::free_port;
use common::*;

for_each_engine! {
    greets_echoes_and_exits_zero_when_the_server_closes,
    sends_the_tutorial_greeting_by_default,
    cannot_connect_after_its_retries_is_a_one_line_error_and_a_failure,
    retries_until_the_server_is_up,
    a_connect_that_hangs_times_out,
    a_reset_by_the_server_ends_the_client_and_any_failure_says_reset,
    #[ignore = "needs socat (apt-get install socat); .ci/run installs it and runs this with --ignored"]
    against_a_socat_server_it_greets_echoes_and_exits_zero,
    an_unknown_host_is_a_one_line_error,
}

fn client(engine: Engine, port: u16, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["client", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(engine.args())
        .args(["--display", "none"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn finish(mut child: Child) -> Output {
    wait_for(&mut child, PATIENCE);
    child.wait_with_output().unwrap()
}

fn test_server() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let give_up = Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                return stream;
            }
            Err(_) if Instant::now() < give_up => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("the client never connected: {e}"),
        }
    }
}

fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).unwrap();
    bytes
}

fn greets_echoes_and_exits_zero_when_the_server_closes(engine: Engine) {
    let (listener, port) = test_server();
    let child = client(engine, port, &["--greeting", "hi board"])
        .spawn()
        .unwrap();
    let mut server = accept(&listener);
    assert_eq!(read_exactly(&mut server, 8), b"hi board");
    let data = random_bytes(512 << 10, 11);
    let echo = echo_through(server.try_clone().unwrap(), data.clone(), false);
    assert_same_bytes(&echo, &data);
    // Invalid and split UTF-8 comes back as it went.
    server.write_all(b"\xe4\xbd").unwrap();
    server.write_all(b"\xa0\xff").unwrap();
    assert_eq!(read_exactly(&mut server, 4), b"\xe4\xbd\xa0\xff");
    drop(server);
    let output = finish(child);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn sends_the_tutorial_greeting_by_default(engine: Engine) {
    let (listener, port) = test_server();
    let child = client(engine, port, &[]).spawn().unwrap();
    let mut server = accept(&listener);
    let greeting = b"hello MicroPython, I am TCP Client";
    assert_eq!(read_exactly(&mut server, greeting.len()), greeting);
    drop(server);
    assert!(finish(child).status.success());
}

fn cannot_connect_after_its_retries_is_a_one_line_error_and_a_failure(engine: Engine) {
    let port = free_port();
    let started = Instant::now();
    let output = finish(client(engine, port, &["--retries", "2"]).spawn().unwrap());
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        format!("echo-std: cannot connect to 127.0.0.1:{port}: Connection refused (os error 111)")
    );
    assert_eq!(stderr.matches("connecting to").count(), 3, "{stderr}");
    // Two waits between the three attempts: 250 ms, then 500 ms.
    assert!(started.elapsed() >= Duration::from_millis(750));
}

fn retries_until_the_server_is_up(engine: Engine) {
    let port = free_port();
    let child = client(engine, port, &["--retries", "10", "--greeting", "late"])
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(400));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let mut server = accept(&listener);
    assert_eq!(read_exactly(&mut server, 4), b"late");
    drop(server);
    assert!(finish(child).status.success());
}

fn a_connect_that_hangs_times_out(engine: Engine) {
    // A listener that never accepts, with a full queue: the kernel ignores further SYNs.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
        queued.push(stream);
        assert!(queued.len() < 16, "the listener queue never filled");
    }
    let started = Instant::now();
    let output = finish(
        client(engine, address.port(), &["--connect-timeout", "0.4"])
            .spawn()
            .unwrap(),
    );
    let took = started.elapsed();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "echo-std: cannot connect to {address}: timed out after"
        )),
        "{stderr}"
    );
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

fn a_reset_by_the_server_ends_the_client_and_any_failure_says_reset(engine: Engine) {
    let (listener, port) = test_server();
    let child = client(engine, port, &["--greeting", "x"]).spawn().unwrap();
    let mut server = accept(&listener);
    assert_eq!(read_exactly(&mut server, 1), b"x");
    server.write_all(b"y").unwrap();
    assert_eq!(read_exactly(&mut server, 1), b"y");
    socket2::SockRef::from(&server)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    // Unread bytes at close also make the kernel reset.
    drop(server);
    let output = finish(child);
    let stderr = String::from_utf8(output.stderr).unwrap();
    // A reset seen while receiving is the end of the stream; one seen while sending is an
    // error. Either way the client ends on its own; a failure must say why.
    if !output.status.success() {
        assert!(stderr.lines().last().unwrap().contains("reset"), "{stderr}");
    }
}

fn against_a_socat_server_it_greets_echoes_and_exits_zero(engine: Engine) {
    let port = free_port();
    let greeting = "hello from the board";
    let dir =
        std::env::temp_dir().join(format!("echo-std-socat-{engine:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let received = dir.join("received");
    // The server keeps the greeting, sends one line, then closes its side.
    let script = format!(
        "head -c {} > '{}'; printf 'from socat\\n'",
        greeting.len(),
        received.display()
    );
    let mut socat = external("socat")
        .args([
            "-t",
            "5",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            &format!("SYSTEM:{script}"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let output = finish(
        client(engine, port, &["--greeting", greeting, "--retries", "10"])
            .spawn()
            .unwrap(),
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    wait_for(&mut socat, PATIENCE);
    assert_eq!(std::fs::read_to_string(&received).unwrap(), greeting);
    assert!(stderr.contains("closed: eof"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn an_unknown_host_is_a_one_line_error(engine: Engine) {
    let output = Command::new(BIN)
        .arg("client")
        .args(engine.args())
        .args(["--host", "no-such-host.invalid", "--display", "none"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("echo-std: cannot resolve no-such-host.invalid"),
        "{stderr}"
    );
}
