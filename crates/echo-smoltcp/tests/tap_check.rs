//! `echo-std check` (its library, `echo_std::check`) against the `tap` and `tap_async` examples: the echo core
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

#[path = "common/example.rs"]
mod example;

use std::net::{SocketAddr, TcpListener};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echo_std::check::{check_client, check_server, Observer, Outcome, Report, Settings, Status};
use example::Running;

const TAP: &str = "tap0";
const STACK_IP: &str = "192.168.69.2/24";
/// The kernel's side of tap0.
const KERNEL: [u8; 4] = [192, 168, 69, 1];
const LIMIT: Duration = Duration::from_secs(20);

/// One test at a time on tap0: a TAP device has one reader.
static TAP_LOCK: Mutex<()> = Mutex::new(());

/// Example `name` with `args`, once tap0 is there.
fn example(name: &str, args: &[&str]) -> (Running, mpsc::Receiver<String>) {
    assert!(
        std::path::Path::new("/sys/class/net").join(TAP).exists(),
        "{TAP} does not exist here: run scripts/tap-netns.sh test"
    );
    example::start(name, args)
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

for_each_example!(
    the_server_passes_every_check,
    the_client_passes_every_client_check
);

fn the_server_passes_every_check(name: &str) {
    let _lock = TAP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_running, lines) = example(
        name,
        &["server", "--iface", TAP, "--ip", STACK_IP, "--port", "5301"],
    );
    let first = lines.recv_timeout(LIMIT).unwrap();
    assert_eq!(first, "listening on 192.168.69.2:5301");
    // The example's output (a line per echo) is not needed, but must not fill its pipe.
    thread::spawn(move || lines.into_iter().for_each(drop));

    let server: SocketAddr = "192.168.69.2:5301".parse().unwrap();
    let report = check_server(&[server], &Settings::default(), &mut Lines);
    assert_all_pass(&report);
}

fn the_client_passes_every_client_check(name: &str) {
    let _lock = TAP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind(SocketAddr::from((KERNEL, 6301))).unwrap();
    let (mut running, lines) = example(
        name,
        &[
            "client",
            "--iface",
            TAP,
            "--ip",
            STACK_IP,
            "--host",
            "192.168.69.1",
            "--port",
            "6301",
        ],
    );
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
