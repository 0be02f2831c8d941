//! Loopback benchmark: the `echo-std` server (one poll loop) against a plain
//! thread-per-connection std echo server (blocking read + `write_all`) at the same buffer size.
//!
//! Both servers are separate processes, so each one's CPU time (user + system, from
//! `/proc/PID/stat`) is its own. They are driven alternately by the same load client, which
//! checks every byte it gets back. The table printed at the end gives ours/baseline ratios.
//!
//! `cargo bench -p echo-std --bench loopback` (Linux; about two minutes). `ECHO_BENCH_QUICK=1`
//! shrinks every run tenfold.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Set in the environment of the bench's own child process that plays the baseline server.
const BASELINE_ENV: &str = "ECHO_LOOPBACK_BASELINE_BUFFER";
/// Rounds per measurement; the median is reported.
const ROUNDS: usize = 5;

fn main() {
    if let Ok(buffer) = std::env::var(BASELINE_ENV) {
        baseline_server(buffer.parse().expect("buffer size"));
        return;
    }
    if std::env::args().any(|arg| arg == "--list") {
        // `cargo bench -- --list` asks benches for their names.
        println!("loopback: bench");
        return;
    }
    let scale: u64 = if std::env::var_os("ECHO_BENCH_QUICK").is_some() {
        10
    } else {
        1
    };
    let mut rows = Vec::new();
    for buffer in [1024usize, 64 * 1024] {
        let ours = Server::ours(buffer);
        let baseline = Server::baseline(buffer);
        let servers = [&ours, &baseline];

        let [o, b] = compare(servers, |server| throughput(server, 1, (256 << 20) / scale));
        rows.push(Row::new(
            format!("throughput, 1 conn, {} buffer", size(buffer)),
            "MiB/s",
            o.mib_per_s(),
            b.mib_per_s(),
            Target::AtLeast(0.9),
        ));
        let [o, b] = compare(servers, |server| throughput(server, 8, (512 << 20) / scale));
        rows.push(Row::new(
            format!("bytes per server CPU-s, 8 conns, {} buffer", size(buffer)),
            "MiB/CPU-s",
            o.mib_per_cpu_s(),
            b.mib_per_cpu_s(),
            Target::AtLeast(0.9),
        ));
        rows.push(Row::new(
            format!("  (raw throughput, 8 conns, {} buffer)", size(buffer)),
            "MiB/s",
            o.mib_per_s(),
            b.mib_per_s(),
            Target::None,
        ));
        let [o, b] = compare(servers, |server| {
            ping_pong(server, (20_000 / scale) as usize)
        });
        rows.push(Row::new(
            format!("64-byte ping-pong p50, {} buffer", size(buffer)),
            "us",
            o.p50_us,
            b.p50_us,
            Target::AtMost(1.2),
        ));
        rows.push(Row::new(
            format!("64-byte ping-pong p99, {} buffer", size(buffer)),
            "us",
            o.p99_us,
            b.p99_us,
            Target::None,
        ));
        if buffer == 1024 {
            let idle = idle_cpu(&ours, 4, Duration::from_secs(5));
            let base = idle_cpu(&baseline, 4, Duration::from_secs(5));
            rows.push(Row::new(
                "idle server, 4 idle clients".into(),
                "% of a core",
                idle,
                base,
                Target::Absolute(1.0),
            ));
        }
    }
    print_table(&rows);
}

/// A server process under test.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn ours(buffer: usize) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_echo-std"));
        command.args([
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--backlog",
            "16",
            "--max-clients",
            "16",
            "--display",
            "none",
        ]);
        command
            .args(["--buffer", &buffer.to_string()])
            .env("RUST_LOG", "warn");
        Server::start("echo-std", command)
    }

    fn baseline(buffer: usize) -> Server {
        let mut command = Command::new(std::env::current_exe().expect("bench executable"));
        command.env(BASELINE_ENV, buffer.to_string());
        Server::start("std threads", command)
    }

    fn start(name: &'static str, mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name} printed {line:?}"));
        Server {
            child,
            addr: addr.parse().expect("address"),
        }
    }

    /// User + system CPU time of the process so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("/proc stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 1000 / clock_ticks_per_second())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output();
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The baseline: what a std programmer writes first.
fn baseline_server(buffer: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("listening on {}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        thread::spawn(move || {
            let mut buf = vec![0u8; buffer];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// One measurement of one server.
#[derive(Clone, Copy, Default)]
struct Sample {
    bytes: u64,
    wall: Duration,
    cpu: Duration,
    p50_us: f64,
    p99_us: f64,
}

impl Sample {
    fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.wall.as_secs_f64()
    }
    fn mib_per_cpu_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.cpu.as_secs_f64().max(0.001)
    }
}

/// Runs `measure` on both servers alternately, ROUNDS times, and keeps each one's median
/// (by the figure that matters: wall time, or CPU time, or p50).
fn compare(servers: [&Server; 2], measure: impl Fn(&Server) -> Sample) -> [Sample; 2] {
    let mut samples = [Vec::new(), Vec::new()];
    measure(servers[0]); // warm-up: page cache, TCP autotuning
    measure(servers[1]);
    for _ in 0..ROUNDS {
        for (index, server) in servers.iter().enumerate() {
            samples[index].push(measure(server));
        }
    }
    samples.map(|mut runs| {
        runs.sort_by(|a, b| {
            (a.wall + a.cpu)
                .cmp(&(b.wall + b.cpu))
                .then(a.p50_us.total_cmp(&b.p50_us))
        });
        runs[runs.len() / 2]
    })
}

/// The byte at `offset` of connection `conn`'s stream: cheap to produce and to check.
fn pattern(conn: usize, offset: u64) -> u8 {
    ((offset.wrapping_mul(7) + conn as u64) % 251) as u8
}

/// `conns` connections each send their share of `total` bytes and read it all back, checked.
fn throughput(server: &Server, conns: usize, total: u64) -> Sample {
    let per_conn = total / conns as u64;
    let cpu_before = server.cpu();
    let start = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|conn| {
            let stream = TcpStream::connect(server.addr).expect("connect");
            stream.set_nodelay(true).unwrap();
            let mut reader = stream.try_clone().unwrap();
            let mut writer = stream;
            let send = thread::spawn(move || {
                let mut chunk = vec![0u8; 64 * 1024];
                let mut offset = 0u64;
                while offset < per_conn {
                    let n = chunk.len().min((per_conn - offset) as usize);
                    for (i, byte) in chunk[..n].iter_mut().enumerate() {
                        *byte = pattern(conn, offset + i as u64);
                    }
                    writer.write_all(&chunk[..n]).expect("send");
                    offset += n as u64;
                }
                writer
                    .shutdown(std::net::Shutdown::Write)
                    .expect("half-close");
            });
            thread::spawn(move || {
                let mut chunk = vec![0u8; 64 * 1024];
                let mut offset = 0u64;
                loop {
                    let n = reader.read(&mut chunk).expect("receive");
                    if n == 0 {
                        break;
                    }
                    for (i, byte) in chunk[..n].iter().enumerate() {
                        assert_eq!(
                            *byte,
                            pattern(conn, offset + i as u64),
                            "byte {} of connection {conn}",
                            offset + i as u64
                        );
                    }
                    offset += n as u64;
                }
                send.join().unwrap();
                assert_eq!(
                    offset, per_conn,
                    "connection {conn} got back {offset} of {per_conn} bytes"
                );
                offset
            })
        })
        .collect();
    let bytes: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("load client"))
        .sum();
    let wall = start.elapsed();
    // The server may still be closing; its CPU for this run is all spent by now.
    Sample {
        bytes,
        wall,
        cpu: server.cpu() - cpu_before,
        ..Sample::default()
    }
}

/// Round trips of 64 bytes on one connection: p50 and p99 of the round-trip time.
fn ping_pong(server: &Server, round_trips: usize) -> Sample {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut times = Vec::with_capacity(round_trips);
    let mut message = [0u8; 64];
    let mut reply = [0u8; 64];
    for trip in 0..round_trips {
        message
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = pattern(trip, i as u64));
        let start = Instant::now();
        stream.write_all(&message).unwrap();
        stream.read_exact(&mut reply).unwrap();
        times.push(start.elapsed());
        assert_eq!(reply, message, "round trip {trip}");
    }
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Sample {
        p50_us: us(times[times.len() / 2]),
        p99_us: us(times[times.len() * 99 / 100]),
        ..Sample::default()
    }
}

/// CPU of the server, in % of one core, while `clients` connected clients stay silent.
fn idle_cpu(server: &Server, clients: usize, period: Duration) -> f64 {
    let streams: Vec<TcpStream> = (0..clients)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    thread::sleep(Duration::from_millis(200));
    let before = server.cpu();
    thread::sleep(period);
    let used = server.cpu() - before;
    drop(streams);
    100.0 * used.as_secs_f64() / period.as_secs_f64()
}

enum Target {
    None,
    /// ours / baseline must be at least this.
    AtLeast(f64),
    /// ours / baseline must be at most this.
    AtMost(f64),
    /// ours itself must be below this.
    Absolute(f64),
}

struct Row {
    what: String,
    unit: &'static str,
    ours: f64,
    baseline: f64,
    target: Target,
}

impl Row {
    fn new(what: String, unit: &'static str, ours: f64, baseline: f64, target: Target) -> Row {
        Row {
            what,
            unit,
            ours,
            baseline,
            target,
        }
    }
}

fn size(bytes: usize) -> String {
    format!("{} KiB", bytes / 1024)
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| measurement | unit | echo-std | std threads | ratio | target | met |");
    println!("|---|---|---:|---:|---:|---|---|");
    for row in rows {
        let ratio = row.ours / row.baseline;
        let (target, met) = match row.target {
            Target::None => (String::new(), ""),
            Target::AtLeast(min) => (
                format!(">= {min}x"),
                if ratio >= min { "yes" } else { "NO" },
            ),
            Target::AtMost(max) => (
                format!("<= {max}x"),
                if ratio <= max { "yes" } else { "NO" },
            ),
            Target::Absolute(max) => (
                format!("< {max} {}", row.unit),
                if row.ours < max { "yes" } else { "NO" },
            ),
        };
        let ratio = match row.baseline > 0.0 {
            true => format!("{ratio:.2}"),
            false => "-".to_string(),
        };
        println!(
            "| {} | {} | {:.2} | {:.2} | {} | {} | {} |",
            row.what, row.unit, row.ours, row.baseline, ratio, target, met
        );
    }
}
