//! `echo-std check` (its library, `echo_std::check`) against the `tap` example: the echo core
//! over echo-smoltcp and smoltcp on a TAP device, the path firmware takes on an ESP32, with
//! the Linux kernel's TCP on the other side as the board owner's computer.
//!
//! Both tests are `#[ignore]`d: they need root and the namespace made by
//! `scripts/tap-netns.sh`, whose `test` command runs them. By hand:
//!
//! ```text
//! cargo build -p echo-smoltcp --example tap && cargo test -p echo-smoltcp --test tap_check --no-run
//! sudo crates/echo-smoltcp/scripts/tap-netns.sh up
//! sudo crates/echo-smoltcp/scripts/tap-netns.sh run cargo test --offline -p echo-smoltcp --test tap_check -- --ignored --test-threads=1 --nocapture
//! sudo crates/echo-smoltcp/scripts/tap-netns.sh down
//! ```
//!
//! The same with the command line, the example running as
//! `tap server --iface tap0 --ip 192.168.69.2/24` in the namespace:
//! `echo-std check 192.168.69.2:5001` there.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echo_std::check::{check_client, check_server, Observer, Outcome, Report, Settings, Status};

const TAP: &str = "tap0";
const STACK_IP: &str = "192.168.69.2/24";
/// The kernel's side of tap0.
const KERNEL: [u8; 4] = [192, 168, 69, 1];
const LIMIT: Duration = Duration::from_secs(20);

/// One test at a time on tap0: a TAP device has one reader.
static TAP_LOCK: Mutex<()> = Mutex::new(());

/// The `tap` example, built next to this test (`cargo build --example tap`), with its stdout
/// lines.
fn example(args: &[&str]) -> (Running, mpsc::Receiver<String>) {
    assert!(
        std::path::Path::new("/sys/class/net").join(TAP).exists(),
        "{TAP} does not exist here: run scripts/tap-netns.sh test"
    );
    let exe = std::env::current_exe().unwrap();
    let path: PathBuf = exe.parent().unwrap().parent().unwrap().join("examples/tap");
    assert!(
        path.exists(),
        "{} missing: cargo build -p echo-smoltcp --example tap",
        path.display()
    );
    let mut child = Command::new(path)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Running(child), rx)
}

/// Kills the example when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints each check's line as it ends, into the test's output.
struct Lines;

impl Observer for Lines {
    fn finished(&mut self, outcome: &Outcome) {
        println!("{}", outcome.line());
    }
}

fn assert_all_pass(report: &Report) {
    println!("\n{}", report.table());
    assert!(
        report
            .checks
            .iter()
            .all(|check| check.status == Status::Pass),
        "{}",
        report.table()
    );
}

#[test]
#[ignore = "needs root and tap0 in a netns: run scripts/tap-netns.sh test"]
fn the_tap_example_server_passes_every_check() {
    let _lock = TAP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_running, lines) =
        example(&["server", "--iface", TAP, "--ip", STACK_IP, "--port", "5301"]);
    let first = lines.recv_timeout(LIMIT).unwrap();
    assert_eq!(first, "listening on 192.168.69.2:5301");
    // The example's output (a line per echo) is not needed, but must not fill its pipe.
    thread::spawn(move || lines.into_iter().for_each(drop));

    let server: SocketAddr = "192.168.69.2:5301".parse().unwrap();
    let report = check_server(&[server], &Settings::default(), &mut Lines);
    assert_all_pass(&report);
}

#[test]
#[ignore = "needs root and tap0 in a netns: run scripts/tap-netns.sh test"]
fn the_tap_example_client_passes_every_client_check() {
    let _lock = TAP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind(SocketAddr::from((KERNEL, 6301))).unwrap();
    let (mut running, lines) = example(&[
        "client",
        "--iface",
        TAP,
        "--ip",
        STACK_IP,
        "--host",
        "192.168.69.1",
        "--port",
        "6301",
    ]);
    thread::spawn(move || lines.into_iter().for_each(drop));

    let settings = Settings {
        wait: LIMIT,
        ..Settings::default()
    };
    let report = check_client(&listener, &settings, &mut Lines);
    assert_all_pass(&report);
    // The check closed the connection, which ends the tutorial's client.
    let give_up = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < give_up, "the example did not exit");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
