//! The `tap` and `tap_async` examples as the TAP tests run them: built next to the test
//! binaries, started with their stdout read line by line, killed when the test ends.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

/// The examples that take the TAP tests: the non-blocking core over echo-smoltcp, and the
/// async core over embassy-net (echo-embassy).
pub const EXAMPLES: [&str; 2] = ["tap", "tap_async"];

/// Where cargo builds example `name`, next to the test binaries; panics if it is not there.
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path: PathBuf = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} missing: cargo build -p echo-smoltcp --examples",
        path.display()
    );
    path
}

/// Starts example `name` with `args`; its stdout lines arrive on the receiver.
pub fn start(name: &str, args: &[&str]) -> (Running, mpsc::Receiver<String>) {
    let mut child = Command::new(path(name))
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
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `#[ignore]`d test per example for each function `fn name(example: &str)` listed: a
/// module `name` with tests `tap` and `tap_async`.
#[macro_export]
macro_rules! for_each_example {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[test]
                #[ignore = "needs root and tap0 in a netns: run scripts/tap-netns.sh test"]
                fn tap() {
                    super::$test("tap")
                }

                #[test]
                #[ignore = "needs root and tap0 in a netns: run scripts/tap-netns.sh test"]
                fn tap_async() {
                    super::$test("tap_async")
                }
            }
        )*
    };
}
