//! Driving the `echo-std` program the way a user or a script does: spawn it, read its output,
//! talk to it over loopback sockets. Every wait is bounded, so a broken program fails a test
//! instead of hanging it.
#![allow(dead_code)] // each test file uses its own part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub mod port;

pub const BIN: &str = env!("CARGO_BIN_EXE_echo-std");

/// Generous bound for anything that should take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// `len` pseudo-random bytes (xorshift), different for each `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The engine an `echo-std server` or `client` runs on (`--engine`): every test of the
/// program runs on each, through [`for_each_engine!`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Nb,
    Async,
}

impl Engine {
    /// `--engine` and its value.
    pub fn args(self) -> [&'static str; 2] {
        match self {
            Engine::Nb => ["--engine", "nb"],
            Engine::Async => ["--engine", "async"],
        }
    }
}

/// For each `name` (a `fn name(engine: Engine)` of the test file), a module `name` with one
/// test per engine, `name::nb` and `name::async_io`, that fail on their own. Attributes
/// (`#[ignore = "..."]`) go to both.
#[macro_export]
macro_rules! for_each_engine {
    ($($(#[$attribute:meta])* $name:ident),* $(,)?) => {
        $(
            mod $name {
                $(#[$attribute])*
                #[test]
                fn nb() {
                    super::$name($crate::common::Engine::Nb)
                }

                $(#[$attribute])*
                #[test]
                fn async_io() {
                    super::$name($crate::common::Engine::Async)
                }
            }
        )*
    };
}

/// A running `echo-std server`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub address: SocketAddr,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Server {
    /// `echo-std server --engine ENGINE --bind 127.0.0.1 --port 0 --display none` plus `args`
    /// (later options win), once it said where it listens.
    pub fn start(engine: Engine, args: &[&str]) -> Server {
        let mut command = Command::new(BIN);
        command
            .arg("server")
            .args(engine.args())
            .args(["--bind", "127.0.0.1", "--port", "0", "--display", "none"])
            .args(args);
        Server::spawn(command)
    }

    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn echo-std");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            text
        });
        let (lines, first_line) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = lines.send(line);
        });
        let line = match first_line.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the server printed nothing in {PATIENCE:?}");
            }
        };
        let parsed = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.trim_end().parse().ok());
        let Some(address) = parsed else {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let stderr = stderr.join().unwrap();
            panic!("first line {line:?} ({status}); stderr:\n{stderr}")
        };
        Server {
            child,
            address,
            stderr: Some(stderr),
        }
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.address)
    }

    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal})");
    }

    /// Waits for the server to exit by itself; its status and stderr.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = wait_for(&mut self.child, PATIENCE);
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, stderr)
    }

    /// Stops the server with SIGTERM; its stderr.
    pub fn stop(self) -> String {
        self.signal(libc::SIGTERM);
        let (status, stderr) = self.wait();
        assert!(status.success(), "{status}; stderr:\n{stderr}");
        stderr
    }

    /// CPU time (user + system) the server used so far, from /proc.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a system constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit, at most `limit`; kills it and fails the test after that.
pub fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let give_up = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > give_up {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the program did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A blocking client with timeouts, so that a missing echo fails instead of hanging.
pub fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `data` from another thread while reading the echo here; returns the echo (all of
/// it, up to EOF when `half_close`, else `data.len()` bytes).
pub fn echo_through(stream: TcpStream, data: Vec<u8>, half_close: bool) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let len = data.len();
    let sending = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        if half_close {
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        }
    });
    let mut reader = stream;
    let mut echo = Vec::with_capacity(len);
    if half_close {
        reader.read_to_end(&mut echo).unwrap();
    } else {
        echo.resize(len, 0);
        reader.read_exact(&mut echo).unwrap();
    }
    sending.join().unwrap();
    echo
}

/// Asserts equality of big byte strings without printing megabytes.
pub fn assert_same_bytes(actual: &[u8], expected: &[u8]) {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    if let Some(at) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("first difference at byte {at}");
    }
}

/// Whether `stream` gets no byte within `quiet` (the read times out).
pub fn stays_silent(stream: &mut TcpStream, quiet: Duration) -> bool {
    stream.set_read_timeout(Some(quiet)).unwrap();
    let silent = matches!(
        stream.read(&mut [0; 16]),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    );
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    silent
}

/// `program`, or a failure saying how to get it (CI installs it: see .ci/run).
pub fn external(program: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: apt-get install -y {program}"
    );
    Command::new(program)
}
