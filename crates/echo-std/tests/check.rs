//! `echo-std check` against servers and clients that are right (`echo-std server`, `echo-std
//! client`, socat) and against small ones written here that are wrong in one way each: every
//! broken one must fail exactly the checks about its fault, with a message that says what went
//! wrong, and pass the others.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::port::free_port;
use common::*;

for_each_engine! {
    echo_std_server_passes_every_check_and_the_text_report_shows_it,
    echo_std_server_passes_every_check_in_the_json_report,
    a_server_with_fewer_slots_than_clients_fails_the_clients_check_only,
    names_are_resolved_and_port_gives_the_port_host_has_not,
    echo_std_client_passes_every_client_check_and_exits_0_when_it_ends,
    another_greeting_is_expected_with_greeting,
}
use serde_json::Value;

const SERVER_CHECKS: [&str; 13] = [
    "short-line",
    "random-binary",
    "split-utf8",
    "invalid-utf8",
    "large-message",
    "partial-send",
    "clients",
    "silent-client",
    "half-close",
    "reset",
    "churn",
    "throughput",
    "latency",
];

const CLIENT_CHECKS: [&str; 6] = [
    "greeting",
    "short-line",
    "random-binary",
    "split-utf8",
    "invalid-utf8",
    "large-message",
];

/// Long enough for every check against a server that answers slowly or not at all.
const CHECK_PATIENCE: Duration = Duration::from_secs(120);

fn check_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("check")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `echo-std check ARGS` to its end.
fn check(args: &[&str]) -> Output {
    let mut child = check_command(args).spawn().expect("spawn echo-std check");
    // Read while it runs: a full pipe would stop it.
    let stdout = read_in_background(child.stdout.take().unwrap());
    let stderr = read_in_background(child.stderr.take().unwrap());
    let status = wait_for(&mut child, CHECK_PATIENCE);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The JSON report of `echo-std check --json ARGS`, and how the program exited.
fn json_check(args: &[&str]) -> (ExitStatus, Value, String) {
    let output = check(&[&["--json"], args].concat());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (output.status, report, stderr)
}

/// Each check's status, by name.
fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|check| {
            (
                check["name"].as_str().unwrap().to_string(),
                check["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn message<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .and_then(|check| check["message"].as_str())
        .unwrap_or_else(|| panic!("no check {name}"))
}

fn figure(report: &Value, name: &str, key: &str) -> f64 {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .and_then(|check| check["figures"][key].as_f64())
        .unwrap_or_else(|| panic!("no figure {key} in {name}"))
}

/// Asserts that exactly `failing` FAIL, every other of `checks` PASSes, and the exit status
/// says so.
fn assert_fails_exactly(
    status: ExitStatus,
    report: &Value,
    checks: &[&str],
    failing: &[&str],
    stderr: &str,
) {
    let expected: BTreeMap<String, String> = checks
        .iter()
        .map(|name| {
            let status = if failing.contains(name) {
                "FAIL"
            } else {
                "PASS"
            };
            (name.to_string(), status.to_string())
        })
        .collect();
    assert_eq!(statuses(report), expected, "{report:#}\nstderr:\n{stderr}");
    assert_eq!(status.code(), Some(if failing.is_empty() { 0 } else { 1 }));
    assert_eq!(report["summary"]["failed"], failing.len());
}

/// A server written here, one thread per connection running `serve`, or one connection at a
/// time when `one_at_a_time`.
fn test_server(one_at_a_time: bool, serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if one_at_a_time {
                serve(stream);
            } else {
                thread::spawn(move || serve(stream));
            }
        }
    });
    address
}

/// A right echo: what is read is written back whole before reading on.
fn echo_right(mut stream: TcpStream) {
    let mut buffer = [0; 1024];
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buffer[..n]).is_err() {
            return;
        }
    }
}

/// The tutorial's `conn.send(data)` on a socket whose sends may be partial: one send per
/// receive, and what it did not take is lost.
fn echo_dropping_the_unsent_part(mut stream: TcpStream) {
    stream.set_nonblocking(true).unwrap();
    let mut buffer = [0; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                let _ = stream.write(&buffer[..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(1)),
            Err(_) => return,
        }
    }
}

/// The tutorial's `data.decode()` on each receive, whose exception closes the connection.
fn echo_closing_on_invalid_utf8(mut stream: TcpStream) {
    let mut buffer = [0; 1024];
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if std::str::from_utf8(&buffer[..n]).is_err() {
            return;
        }
        if stream.write_all(&buffer[..n]).is_err() {
            return;
        }
    }
}

fn target(address: SocketAddr) -> String {
    address.to_string()
}

fn echo_std_server_passes_every_check_and_the_text_report_shows_it(engine: Engine) {
    let server = Server::start(engine, &[]);
    let output = check(&[&target(server.address)]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for name in SERVER_CHECKS {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("PASS  {name} "))),
            "no PASS line for {name}:\n{stdout}"
        );
    }
    let table = stdout
        .split_once("\ncheck          status  figures\n")
        .map(|(_, table)| table)
        .unwrap_or_else(|| panic!("no table:\n{stdout}"));
    assert_eq!(
        table.lines().filter(|l| l.contains(" PASS ")).count(),
        SERVER_CHECKS.len(),
        "{table}"
    );
    assert!(
        table.ends_with("\n13 checks: 13 passed, 0 failed, 0 skipped\n"),
        "{table}"
    );
    // Not a terminal: no progress bar, no escape codes.
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "{stderr}"
    );
    server.stop();
}

fn echo_std_server_passes_every_check_in_the_json_report(engine: Engine) {
    let server = Server::start(engine, &[]);
    let (status, report, stderr) = json_check(&[&target(server.address), "--bytes", "512K"]);
    assert_fails_exactly(status, &report, &SERVER_CHECKS, &[], &stderr);
    assert_eq!(report["version"], 1);
    assert_eq!(report["mode"], "server");
    assert_eq!(report["peer"], server.address.to_string());
    assert_eq!(report["settings"]["bytes"], 512 << 10);
    assert_eq!(report["settings"]["timeout_s"], 10.0);
    assert_eq!(report["settings"]["clients"], 3);
    assert_eq!(
        figure(&report, "random-binary", "bytes"),
        f64::from(512 << 10)
    );
    assert_eq!(
        figure(&report, "partial-send", "bytes"),
        f64::from(512 << 10)
    );
    assert_eq!(figure(&report, "clients", "served_at_once"), 3.0);
    assert!(figure(&report, "throughput", "mib_per_s") > 0.0);
    let (p50, p99) = (
        figure(&report, "latency", "p50_us"),
        figure(&report, "latency", "p99_us"),
    );
    assert!(0.0 < p50 && p50 <= p99, "{p50} {p99}");
    // The lines still come as the checks end, on stderr.
    assert_eq!(
        stderr.matches("\nPASS  ").count(),
        SERVER_CHECKS.len(),
        "{stderr}"
    );
    server.stop();
}

fn a_server_with_fewer_slots_than_clients_fails_the_clients_check_only(engine: Engine) {
    let server = Server::start(engine, &[]);
    let (status, report, stderr) =
        json_check(&[&target(server.address), "--clients", "4", "--timeout", "2"]);
    assert_fails_exactly(status, &report, &SERVER_CHECKS, &["clients"], &stderr);
    assert_eq!(
        message(&report, "clients"),
        "3 of 4 clients were served at once, 1 waited until others closed: the server serves \
         3 clients at a time, the check asks for 4 (--clients)"
    );
    server.stop();
}

#[test]
fn a_server_that_drops_the_unsent_part_of_a_send_fails_partial_send_only() {
    let address = test_server(false, echo_dropping_the_unsent_part);
    let (status, report, stderr) = json_check(&[&target(address), "--timeout", "2"]);
    assert_fails_exactly(status, &report, &SERVER_CHECKS, &["partial-send"], &stderr);
    let message = message(&report, "partial-send");
    assert!(
        message.starts_with("lost ") && message.contains(" at offset "),
        "{message}"
    );
    assert!(
        message.contains("the server's sends were partial"),
        "{message}"
    );
}

#[test]
fn a_server_that_closes_on_invalid_utf8_fails_the_three_byte_checks_only() {
    let address = test_server(false, echo_closing_on_invalid_utf8);
    let (status, report, stderr) = json_check(&[&target(address), "--timeout", "2"]);
    assert_fails_exactly(
        status,
        &report,
        &SERVER_CHECKS,
        &["random-binary", "split-utf8", "invalid-utf8"],
        &stderr,
    );
    assert_eq!(
        message(&report, "split-utf8"),
        "你😀é sent one byte per write: the server closed the connection after echoing 0 of \
         9 bytes"
    );
    assert_eq!(
        message(&report, "invalid-utf8"),
        "the server closed the connection after echoing 0 of 50 bytes"
    );
    let binary = message(&report, "random-binary");
    assert!(
        binary.contains("after echoing 0 of 1048576 bytes")
            || binary.contains("reset after 0 of 1048576"),
        "{binary}"
    );
}

#[test]
fn a_server_that_serves_one_client_at_a_time_fails_the_two_client_checks_only() {
    let address = test_server(true, echo_right);
    let (status, report, stderr) = json_check(&[&target(address), "--timeout", "2"]);
    assert_fails_exactly(
        status,
        &report,
        &SERVER_CHECKS,
        &["clients", "silent-client"],
        &stderr,
    );
    assert_eq!(
        message(&report, "clients"),
        "1 of 3 clients were served at once, 2 waited until others closed: the server serves \
         1 client at a time, the check asks for 3 (--clients)"
    );
    assert_eq!(figure(&report, "clients", "waited"), 2.0);
    assert_eq!(
        message(&report, "silent-client"),
        "timed out after 2.0 s with 0 of 12 bytes echoed while another client stayed \
         connected and silent; the echo came once that client closed: the server serves one \
         client at a time"
    );
}

#[test]
fn a_server_that_never_answers_fails_short_line_in_time_and_skips_the_rest() {
    let address = test_server(false, |stream| {
        thread::sleep(Duration::from_secs(30));
        drop(stream);
    });
    let started = Instant::now();
    let (status, report, stderr) = json_check(&[&target(address), "--timeout", "1"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        message(&report, "short-line"),
        "timed out after 1.0 s with 0 of 12 bytes echoed"
    );
    let statuses = statuses(&report);
    assert_eq!(statuses["short-line"], "FAIL");
    assert!(
        SERVER_CHECKS[1..]
            .iter()
            .all(|name| statuses[*name] == "SKIP"),
        "{statuses:?}"
    );
    assert_eq!(
        message(&report, "latency"),
        "not run: the server did not echo a short line (short-line)"
    );
    assert_eq!(
        stderr.lines().last(),
        Some("echo-std: 1 of 13 checks failed"),
        "{stderr}"
    );
}

#[test]
fn nobody_listening_is_a_failed_short_line() {
    let port = free_port();
    let output = check(&[&format!("127.0.0.1:{port}")]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains(&format!(
            "FAIL  short-line     cannot connect to 127.0.0.1:{port}: Connection refused"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("13 checks: 0 passed, 1 failed, 12 skipped"),
        "{stdout}"
    );
}

fn names_are_resolved_and_port_gives_the_port_host_has_not(engine: Engine) {
    let output = check(&["no-such-host.invalid"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("echo-std: cannot resolve no-such-host.invalid"),
        "{stderr}"
    );
    let server = Server::start(engine, &[]);
    let port = server.address.port().to_string();
    let (status, report, _) = json_check(&["localhost", "--port", &port, "--bytes", "64K"]);
    assert!(status.success(), "{report:#}");
    assert!(report["peer"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{port}")));
    server.stop();
}

#[test]
fn mistakes_on_the_command_line_exit_2() {
    for args in [
        &[][..],
        &["--client", "127.0.0.1"],
        &["127.0.0.1", "--bytes", "12"],
        &["127.0.0.1", "--timeout", "0"],
        &["127.0.0.1", "--greeting", "hi"],
    ] {
        let output = check(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
#[ignore = "needs socat (apt-get install socat); .ci/run installs it and runs this with --ignored"]
fn socat_forking_cat_passes_every_check() {
    let port = free_port();
    let mut socat = external("socat")
        .args([
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
            "EXEC:cat",
        ])
        .stdout(Stdio::null())
        // It reports the reset check's broken pipe.
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let give_up = Instant::now() + PATIENCE;
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < give_up, "socat never listened");
        thread::sleep(Duration::from_millis(20));
    }
    let (status, report, stderr) = json_check(&[&target(address)]);
    let _ = socat.kill();
    let _ = socat.wait();
    assert_fails_exactly(status, &report, &SERVER_CHECKS, &[], &stderr);
}

/// A running `echo-std check --client`, and the address it listens on.
struct ClientCheck {
    child: Child,
    address: SocketAddr,
    stdout: thread::JoinHandle<Vec<u8>>,
    stderr: thread::JoinHandle<String>,
}

impl ClientCheck {
    fn start(args: &[&str]) -> ClientCheck {
        let mut child = check_command(
            &[
                &["--client", "--bind", "127.0.0.1", "--port", "0", "--json"][..],
                args,
            ]
            .concat(),
        )
        .spawn()
        .unwrap();
        let stdout = read_in_background(child.stdout.take().unwrap());
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        let address = first
            .strip_prefix("listening on ")
            .and_then(|rest| rest.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("first line on stderr: {first:?}"));
        let stderr = thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            first + &rest
        });
        ClientCheck {
            child,
            address,
            stdout,
            stderr,
        }
    }

    fn finish(mut self) -> (ExitStatus, Value, String) {
        let status = wait_for(&mut self.child, CHECK_PATIENCE);
        let stdout = self.stdout.join().unwrap();
        let stderr = self.stderr.join().unwrap();
        let report = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr:\n{stderr}",
                String::from_utf8_lossy(&stdout)
            )
        });
        (status, report, stderr)
    }
}

fn echo_std_client(engine: Engine, address: SocketAddr, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(["client", "--host", "127.0.0.1", "--port"])
        .arg(address.port().to_string())
        .args(engine.args())
        .args(["--display", "none"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn echo_std_client_passes_every_client_check_and_exits_0_when_it_ends(engine: Engine) {
    let check = ClientCheck::start(&[]);
    let mut client = echo_std_client(engine, check.address, &[]);
    let (status, report, stderr) = check.finish();
    assert_fails_exactly(status, &report, &CLIENT_CHECKS, &[], &stderr);
    assert_eq!(report["mode"], "client");
    assert_eq!(
        report["settings"]["greeting"],
        "hello MicroPython, I am TCP Client"
    );
    assert!(report["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let ended = wait_for(&mut client, PATIENCE);
    assert!(ended.success(), "the client ended with {ended}");
}

fn another_greeting_is_expected_with_greeting(engine: Engine) {
    let check = ClientCheck::start(&["--greeting", "hi board", "--bytes", "64K"]);
    let mut client = echo_std_client(engine, check.address, &["--greeting", "hi board"]);
    let (status, report, stderr) = check.finish();
    assert_fails_exactly(status, &report, &CLIENT_CHECKS, &[], &stderr);
    assert!(wait_for(&mut client, PATIENCE).success());
}

/// Connects to the check as a client written here: `greeting`, then `echo` on the
/// connection.
fn test_client(address: SocketAddr, greeting: &'static [u8], echo: fn(TcpStream)) {
    thread::spawn(move || {
        let mut stream = connect(address);
        stream.write_all(greeting).unwrap();
        echo(stream);
    });
}

const GREETING: &[u8] = b"hello MicroPython, I am TCP Client";

#[test]
fn a_client_with_another_greeting_fails_greeting_only() {
    let check = ClientCheck::start(&[]);
    test_client(check.address, b"hello, I am a board", echo_right);
    let (status, report, stderr) = check.finish();
    assert_fails_exactly(status, &report, &CLIENT_CHECKS, &["greeting"], &stderr);
    assert_eq!(
        message(&report, "greeting"),
        r#"expected the greeting "hello MicroPython, I am TCP Client", got "hello, I am a board""#
    );
}

#[test]
fn a_client_that_echoes_text_lossily_fails_the_three_byte_checks_only() {
    let check = ClientCheck::start(&[]);
    // Decoding with replacement characters, then encoding: invalid and split UTF-8 change.
    test_client(check.address, GREETING, |mut stream| {
        let mut buffer = [0; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if stream.write_all(text.as_bytes()).is_err() {
                return;
            }
        }
    });
    let (status, report, stderr) = check.finish();
    assert_fails_exactly(
        status,
        &report,
        &CLIENT_CHECKS,
        &["random-binary", "split-utf8", "invalid-utf8"],
        &stderr,
    );
    assert_eq!(
        message(&report, "split-utf8"),
        r#"你😀é sent one byte per write: sent "\xe4\xbd\xa0\xf0\x9f\x98\x80\xc3\xa9", got "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd""#
    );
}

#[test]
fn a_client_that_closes_on_invalid_utf8_fails_and_the_later_checks_are_skipped() {
    let check = ClientCheck::start(&[]);
    test_client(check.address, GREETING, echo_closing_on_invalid_utf8);
    let (status, report, _) = check.finish();
    assert_eq!(status.code(), Some(1));
    let statuses = statuses(&report);
    let expected: BTreeMap<String, String> = [
        ("greeting", "PASS"),
        ("short-line", "PASS"),
        ("random-binary", "FAIL"),
        ("split-utf8", "SKIP"),
        ("invalid-utf8", "SKIP"),
        ("large-message", "SKIP"),
    ]
    .into_iter()
    .map(|(name, status)| (name.to_string(), status.to_string()))
    .collect();
    assert_eq!(statuses, expected, "{report:#}");
    assert_eq!(
        message(&report, "large-message"),
        "not run: the client's connection ended (random-binary)"
    );
}

#[test]
fn no_client_within_wait_fails_greeting_and_skips_the_rest() {
    let started = Instant::now();
    let check = ClientCheck::start(&["--wait", "0.5"]);
    let address = check.address;
    let (status, report, _) = check.finish();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        message(&report, "greeting"),
        format!("no client connected to {address} within 0.5 s")
    );
    assert_eq!(report["summary"]["skipped"], 5);
    assert_eq!(report["peer"], Value::Null);
}
