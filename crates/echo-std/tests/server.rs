//! `echo-std server` driven like a user does: real loopback sockets, real signals, real files.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

for_each_engine! {
    prints_the_real_port_first_and_echoes_mebibytes_of_random_binary_byte_exact,
    serves_several_clients_at_once,
    a_silent_client_does_not_block_others,
    a_peer_reset_mid_stream_ends_only_that_connection,
    a_client_that_never_pauses_holds_up_neither_the_others_nor_the_stop,
    half_close_gets_everything_echoed_then_eof,
    a_slow_reader_loses_nothing,
    invalid_and_split_utf8_is_echoed_as_is_and_the_server_lives_on,
    clients_beyond_max_clients_wait_in_the_backlog_and_are_served_when_a_slot_frees,
    idle_timeout_closes_quiet_connections_only,
    sigterm_and_sigint_close_every_connection_and_exit_zero,
    an_idle_server_sleeps,
    a_port_in_use_is_a_one_line_error_and_a_failure,
    png_display_shows_the_screen_and_is_never_half_written,
    terminal_display_draws_half_blocks_and_a_summary_on_stderr,
    display_auto_draws_nothing_when_stderr_is_not_a_terminal,
    #[ignore = "needs socat (apt-get install socat); .ci/run installs it and runs this with --ignored"]
    socat_as_a_client_gets_its_file_back,
    #[ignore = "needs ncat (apt-get install ncat); .ci/run installs it and runs this with --ignored"]
    ncat_as_a_client_gets_its_line_back,
}

fn prints_the_real_port_first_and_echoes_mebibytes_of_random_binary_byte_exact(engine: Engine) {
    let server = Server::start(engine, &[]);
    assert_eq!(server.address.ip().to_string(), "127.0.0.1");
    assert_ne!(server.address.port(), 0);
    let data = random_bytes(4 << 20, 1);
    let echo = echo_through(server.connect(), data.clone(), false);
    assert_same_bytes(&echo, &data);
    server.stop();
}

fn serves_several_clients_at_once(engine: Engine) {
    let server = Server::start(engine, &["--max-clients", "4", "--buffer", "4096"]);
    let clients: Vec<_> = (0..4)
        .map(|seed| {
            let stream = server.connect();
            thread::spawn(move || {
                let data = random_bytes(1 << 20, seed);
                let echo = echo_through(stream, data.clone(), false);
                assert_same_bytes(&echo, &data);
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    server.stop();
}

fn a_silent_client_does_not_block_others(engine: Engine) {
    let server = Server::start(engine, &[]);
    let _silent = server.connect();
    let mut greedy = server.connect();
    // One that sends and never reads its echo either.
    greedy.write_all(&random_bytes(64 << 10, 2)).unwrap();
    let started = Instant::now();
    let echo = echo_through(server.connect(), b"ping".to_vec(), false);
    assert_eq!(echo, b"ping");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.stop();
}

fn a_peer_reset_mid_stream_ends_only_that_connection(engine: Engine) {
    let server = Server::start(engine, &[]);
    let mut doomed = server.connect();
    let witness = server.connect();
    doomed.write_all(&random_bytes(1 << 20, 3)).unwrap();
    socket2::SockRef::from(&doomed)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(doomed);
    let data = random_bytes(256 << 10, 4);
    assert_same_bytes(&echo_through(witness, data.clone(), false), &data);
    assert_eq!(
        echo_through(server.connect(), b"after".to_vec(), false),
        b"after"
    );
    server.stop();
}

fn a_client_that_never_pauses_holds_up_neither_the_others_nor_the_stop(engine: Engine) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let server = Server::start(engine, &[]);
    // A peer that sends as fast as it can and reads its echo as fast: the server's reads
    // and writes on it never have to wait.
    let flood = server.connect();
    // Room in flight, so that the server always finds data to read and room to write.
    let socket = socket2::SockRef::from(&flood);
    socket.set_send_buffer_size(4 << 20).unwrap();
    socket.set_recv_buffer_size(4 << 20).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let mut writer = flood.try_clone().unwrap();
    let writing = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let chunk = random_bytes(64 << 10, 9);
            while !done.load(Ordering::Relaxed) && writer.write_all(&chunk).is_ok() {}
        })
    };
    let mut reader = flood;
    let reading = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut buffer = vec![0; 64 << 10];
            while !done.load(Ordering::Relaxed)
                && matches!(reader.read(&mut buffer), Ok(n) if n > 0)
            {}
        })
    };
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        echo_through(server.connect(), b"ping".to_vec(), false),
        b"ping"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the echo took {took:?}");
    let started = Instant::now();
    server.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "the stop took {took:?}");
    done.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    reading.join().unwrap();
}

fn half_close_gets_everything_echoed_then_eof(engine: Engine) {
    let server = Server::start(engine, &[]);
    let data = random_bytes(2 << 20, 5);
    let echo = echo_through(server.connect(), data.clone(), true);
    assert_same_bytes(&echo, &data);
    server.stop();
}

fn a_slow_reader_loses_nothing(engine: Engine) {
    let server = Server::start(engine, &[]);
    let stream = server.connect();
    let data = random_bytes(8 << 20, 6);
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let sending = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    // Let the sender fill every buffer on the way (and the server stop reading) first.
    thread::sleep(Duration::from_millis(1000));
    let mut reader = stream;
    let mut echo = Vec::new();
    reader.read_to_end(&mut echo).unwrap();
    sending.join().unwrap();
    assert_same_bytes(&echo, &data);
    server.stop();
}

fn invalid_and_split_utf8_is_echoed_as_is_and_the_server_lives_on(engine: Engine) {
    let png = std::env::temp_dir().join(format!(
        "echo-std-utf8-{engine:?}-{}.png",
        std::process::id()
    ));
    let display = format!("png:{}", png.display());
    let server = Server::start(engine, &["--display", &display]);
    let mut stream = server.connect();
    // "你" (e4 bd a0) split across writes, then bytes that are UTF-8 nowhere.
    let pieces: [&[u8]; 4] = [b"ni \xe4", b"\xbd", b"\xa0 ok", b" \xff\xfe\xc3("];
    let mut expected = Vec::new();
    for piece in pieces {
        stream.write_all(piece).unwrap();
        expected.extend_from_slice(piece);
        let mut echo = vec![0; piece.len()];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(echo, piece);
        thread::sleep(Duration::from_millis(60));
    }
    drop(stream);
    assert_eq!(
        echo_through(server.connect(), b"still here".to_vec(), false),
        b"still here"
    );
    server.stop();
    let _ = std::fs::remove_file(png);
}

fn clients_beyond_max_clients_wait_in_the_backlog_and_are_served_when_a_slot_frees(engine: Engine) {
    // 9: the async server has no size of 9 slots, it holds 16 to 9 connections.
    for max_clients in [1, 9] {
        let server = Server::start(engine, &["--max-clients", &max_clients.to_string()]);
        let mut served: Vec<_> = (0..max_clients).map(|_| server.connect()).collect();
        for stream in &mut served {
            stream.write_all(b"first").unwrap();
            let mut echo = [0; 5];
            stream.read_exact(&mut echo).unwrap();
        }
        let mut second = server.connect();
        second.write_all(b"second").unwrap();
        assert!(
            stays_silent(&mut second, Duration::from_millis(400)),
            "served beyond --max-clients {max_clients}"
        );
        drop(served.pop());
        let mut echo = [0; 6];
        second.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"second");
        server.stop();
    }
}

/// The async server's size is a constant: a count it was not built for is refused up front,
/// in the way every other bad option is.
#[test]
fn more_clients_than_the_async_engine_serves_is_a_usage_error() {
    let output = Command::new(BIN)
        .args(["server", "--engine", "async", "--max-clients", "65"])
        .args(["--port", "0", "--display", "none"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "printed a listening line");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(
            "error: --max-clients 65: the async engine serves at most 64 clients at once"
        ),
        "{stderr}"
    );
    // 64 it serves.
    let server = Server::start(Engine::Async, &["--max-clients", "64"]);
    assert_eq!(echo_through(server.connect(), b"x".to_vec(), false), b"x");
    server.stop();
}

fn idle_timeout_closes_quiet_connections_only(engine: Engine) {
    let server = Server::start(engine, &["--idle-timeout", "0.5"]);
    let mut quiet = server.connect();
    let mut chatty = server.connect();
    let started = Instant::now();
    let mut closed_at = None;
    let mut buffer = [0; 8];
    // The chatty one talks every 100 ms and must stay connected past the timeout.
    while started.elapsed() < Duration::from_millis(1500) {
        chatty.write_all(b"hi").unwrap();
        chatty.read_exact(&mut buffer[..2]).unwrap();
        if closed_at.is_none() {
            quiet
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            match quiet.read(&mut buffer) {
                Ok(0) => closed_at = Some(started.elapsed()),
                Ok(n) => panic!("unexpected {n} bytes"),
                Err(_) => {}
            }
        } else {
            thread::sleep(Duration::from_millis(100));
        }
    }
    let closed_at = closed_at.expect("the quiet connection was never closed");
    assert!(closed_at >= Duration::from_millis(450), "{closed_at:?}");
    assert!(closed_at < Duration::from_millis(1200), "{closed_at:?}");
    server.stop();
}

fn sigterm_and_sigint_close_every_connection_and_exit_zero(engine: Engine) {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let server = Server::start(engine, &[]);
        let mut client = server.connect();
        assert_eq!(
            echo_through(client.try_clone().unwrap(), b"x".to_vec(), false),
            b"x"
        );
        server.signal(signal);
        let (status, stderr) = server.wait();
        assert_eq!(status.code(), Some(0), "signal {signal}; stderr:\n{stderr}");
        assert_eq!(client.read(&mut [0; 8]).unwrap(), 0, "connection left open");
    }
}

fn an_idle_server_sleeps(engine: Engine) {
    let server = Server::start(engine, &["--idle-timeout", "60"]);
    let _quiet = server.connect();
    assert_eq!(echo_through(server.connect(), b"x".to_vec(), false), b"x");
    thread::sleep(Duration::from_millis(200));
    let before = server.cpu_time();
    thread::sleep(Duration::from_secs(2));
    let used = server.cpu_time() - before;
    // A spinning loop would use the whole 2 s.
    assert!(
        used <= Duration::from_millis(40),
        "{used:?} of CPU in 2 s idle"
    );
    server.stop();
}

fn a_port_in_use_is_a_one_line_error_and_a_failure(engine: Engine) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(BIN)
        .arg("server")
        .args(engine.args())
        .args(["--bind", "127.0.0.1", "--port", &port, "--display", "none"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "printed a listening line");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("echo-std: cannot bind 127.0.0.1:{port}: Address already in use (os error 98)")
    );
}

fn png_display_shows_the_screen_and_is_never_half_written(engine: Engine) {
    let dir = std::env::temp_dir().join(format!("echo-std-png-{engine:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("oled.png");
    let display = format!("png:{}", path.display());
    let server = Server::start(engine, &["--display", &display]);
    let decode = || -> Option<Vec<u8>> {
        let bytes = std::fs::read(&path).ok()?;
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .expect("a whole PNG");
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).expect("whole PNG data");
        assert_eq!((info.width, info.height), (512, 256));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        Some(pixels)
    };
    // The OLED's fourth text row (y 48..64) is at 192..256 in the 4x image.
    let text_row_lit = |pixels: &[u8]| pixels[192 * 512..].iter().filter(|&&p| p == 0xff).count();

    let mut stream = server.connect();
    let mut lit_before = None;
    let give_up = Instant::now() + PATIENCE;
    while lit_before.is_none() {
        assert!(Instant::now() < give_up, "no PNG written");
        lit_before = decode().map(|pixels| {
            assert!(
                pixels[..16 * 4 * 512].contains(&0xff),
                "the address row is empty"
            );
            text_row_lit(&pixels)
        });
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lit_before, Some(0), "text shown before any was received");
    for message in 0..20 {
        let text = format!("message {message}");
        stream.write_all(text.as_bytes()).unwrap();
        let mut echo = vec![0; text.len()];
        stream.read_exact(&mut echo).unwrap();
        // Read while the server rewrites it: every read must decode (expect above).
        let _ = decode();
    }
    let give_up = Instant::now() + PATIENCE;
    while decode().map(|pixels| text_row_lit(&pixels)).unwrap_or(0) == 0 {
        assert!(Instant::now() < give_up, "received text never shown");
        thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["oled.png"], "temporary files left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn terminal_display_draws_half_blocks_and_a_summary_on_stderr(engine: Engine) {
    let server = Server::start(engine, &["--display", "terminal"]);
    // The first picture before the first client: the async engine draws between turns of its
    // executor, and a client already waiting when it listens is served in that same turn.
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        echo_through(server.connect(), b"hello".to_vec(), false),
        b"hello"
    );
    thread::sleep(Duration::from_millis(200));
    let stderr = server.stop();
    assert!(
        stderr.contains('█') || stderr.contains('▀'),
        "no picture:\n{stderr}"
    );
    assert!(
        stderr.contains("clients 0/3  in 5 B  out 5 B"),
        "no summary:\n{stderr}"
    );
    assert!(
        stderr.contains("\x1b[33F"),
        "never redrawn in place:\n{stderr}"
    );
}

fn display_auto_draws_nothing_when_stderr_is_not_a_terminal(engine: Engine) {
    let server = Server::start(engine, &["--display", "auto"]);
    assert_eq!(
        echo_through(server.connect(), b"hello".to_vec(), false),
        b"hello"
    );
    let stderr = server.stop();
    assert!(
        !stderr.contains('▀') && !stderr.contains('\x1b'),
        "{stderr}"
    );
    assert!(
        stderr.contains("connected from 127.0.0.1:"),
        "logs missing:\n{stderr}"
    );
}

/// The connection numbers `--threads N` logged as connected: loop `k` numbers its clients
/// `k`, `k + N`, `k + 2N`...
fn connected_ids(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter(|line| line.contains("connected from"))
        .filter_map(|line| line.split('#').nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn threads_echo_byte_exact_across_loops_each_serving_its_share() {
    let server = Server::start(
        Engine::Nb,
        &["--threads", "2", "--max-clients", "4", "--buffer", "4096"],
    );
    let clients: Vec<_> = (0..4)
        .map(|seed| {
            let stream = server.connect();
            thread::spawn(move || {
                let data = random_bytes(1 << 20, 10 + seed);
                let echo = echo_through(stream, data.clone(), false);
                assert_same_bytes(&echo, &data);
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let stderr = server.stop();
    let ids = connected_ids(&stderr);
    assert_eq!(ids.len(), 4, "{stderr}");
    // Each client goes to the loop serving the fewest: two each.
    assert_eq!(ids.iter().filter(|id| *id % 2 == 0).count(), 2, "{ids:?}");
}

#[test]
fn max_clients_is_the_total_over_all_loops() {
    let server = Server::start(Engine::Nb, &["--threads", "2", "--max-clients", "3"]);
    let mut served: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    for (i, stream) in served.iter_mut().enumerate() {
        let message = format!("client {i}");
        stream.write_all(message.as_bytes()).unwrap();
        let mut echo = vec![0; message.len()];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(echo, message.as_bytes());
    }
    let mut waiting = server.connect();
    waiting.write_all(b"fourth").unwrap();
    assert!(
        stays_silent(&mut waiting, Duration::from_millis(400)),
        "served beyond --max-clients"
    );
    // The loop whose slot frees takes the one waiting.
    drop(served.remove(0));
    let mut echo = [0; 6];
    waiting.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"fourth");
    server.stop();
}

#[test]
fn threads_show_one_display_with_the_summary_of_all_loops() {
    let server = Server::start(
        Engine::Nb,
        &[
            "--threads",
            "2",
            "--max-clients",
            "4",
            "--display",
            "terminal",
        ],
    );
    let clients: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    for client in &clients {
        assert_eq!(
            echo_through(client.try_clone().unwrap(), b"hello".to_vec(), false),
            b"hello"
        );
    }
    thread::sleep(Duration::from_millis(300));
    drop(clients);
    thread::sleep(Duration::from_millis(300));
    let stderr = server.stop();
    assert!(
        stderr.contains("clients 2/4  in 10 B  out 10 B"),
        "no summary of both loops while both were served:\n{stderr}"
    );
    assert!(
        stderr.contains("clients 0/4  in 10 B  out 10 B"),
        "no summary of both loops:\n{stderr}"
    );
}

#[test]
fn sigterm_stops_every_loop_closing_every_connection_and_an_idle_server_sleeps() {
    let server = Server::start(Engine::Nb, &["--threads", "3", "--max-clients", "6"]);
    let mut clients: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    for client in &clients {
        assert_eq!(
            echo_through(client.try_clone().unwrap(), b"x".to_vec(), false),
            b"x"
        );
    }
    thread::sleep(Duration::from_millis(200));
    let before = server.cpu_time();
    thread::sleep(Duration::from_secs(1));
    let used = server.cpu_time() - before;
    assert!(
        used <= Duration::from_millis(20),
        "{used:?} of CPU in 1 s idle"
    );
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    for client in &mut clients {
        assert_eq!(client.read(&mut [0; 8]).unwrap(), 0, "connection left open");
    }
    assert_eq!(
        stderr.matches("closed: shutdown").count(),
        3,
        "every loop shut its connection:\n{stderr}"
    );
}

#[test]
fn more_threads_than_clients_is_a_one_line_error() {
    let output = Command::new(BIN)
        .args([
            "server",
            "--port",
            "0",
            "--threads",
            "4",
            "--max-clients",
            "3",
        ])
        .args(["--display", "none"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        "echo-std: --threads 4 is more than --max-clients 3: every loop needs a client slot"
    );
}

#[test]
fn threads_are_for_the_nb_engine_only() {
    let output = Command::new(BIN)
        .args([
            "server",
            "--port",
            "0",
            "--engine",
            "async",
            "--threads",
            "2",
        ])
        .args(["--display", "none"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("--threads: the async engine runs one loop (--engine nb runs several)"),
        "{stderr}"
    );
}

fn socat_as_a_client_gets_its_file_back(engine: Engine) {
    let server = Server::start(engine, &[]);
    let data = random_bytes(1 << 20, 7);
    let mut socat = external("socat")
        .args(["-t", "5", "-", &format!("TCP:{}", server.address)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = socat.stdin.take().unwrap();
    let sent = data.clone();
    let feeding = thread::spawn(move || stdin.write_all(&sent).unwrap());
    let mut echo = Vec::new();
    socat.stdout.take().unwrap().read_to_end(&mut echo).unwrap();
    feeding.join().unwrap();
    assert!(wait_for(&mut socat, PATIENCE).success());
    assert_same_bytes(&echo, &data);
    server.stop();
}

fn ncat_as_a_client_gets_its_line_back(engine: Engine) {
    let server = Server::start(engine, &[]);
    let output = external("ncat")
        .args([
            "--wait",
            "5",
            &server.address.ip().to_string(),
            &server.address.port().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut ncat| {
            ncat.stdin
                .take()
                .unwrap()
                .write_all("hello 你好\n".as_bytes())?;
            // The server closes after echoing (EOF from ncat), and ncat exits.
            let status = wait_for(&mut ncat, PATIENCE);
            let mut out = String::new();
            ncat.stdout.take().unwrap().read_to_string(&mut out)?;
            Ok((status, out))
        })
        .unwrap();
    assert!(output.0.success());
    assert_eq!(output.1, "hello 你好\n");
    server.stop();
}
