//! The report as text (a line per check, a summary table) and as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{Figure, Mode, Outcome, Report, Status, Unit};

/// The JSON report's `version`: raised only when a field changes meaning or goes away.
const JSON_VERSION: u32 = 1;

/// Longest check name, for the columns.
const NAME_WIDTH: usize = 14;

impl Outcome {
    /// The line printed when the check ends: status, name, message, figures.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{}  {:<NAME_WIDTH$} {}",
            self.status, self.name, self.message
        );
        if !self.figures.is_empty() {
            let _ = write!(line, " ({})", figures(&self.figures));
        }
        line
    }
}

impl Report {
    /// The summary table: a row per check with its figures (its message when it did not
    /// pass), then the counts.
    pub fn table(&self) -> String {
        let mut table = format!("{:<NAME_WIDTH$} status  figures\n", "check");
        for check in &self.checks {
            let detail = match check.status {
                Status::Pass if !check.figures.is_empty() => figures(&check.figures),
                _ => check.message.clone(),
            };
            let _ = writeln!(
                table,
                "{:<NAME_WIDTH$} {}    {detail}",
                check.name, check.status
            );
        }
        let _ = writeln!(table, "\n{}", self.summary());
        table
    }

    /// `13 checks: 12 passed, 1 failed, 0 skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} checks: {} passed, {} failed, {} skipped",
            self.checks.len(),
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Skip)
        )
    }

    /// The report as JSON, in the schema of the [module docs](super#json).
    pub fn to_json(&self) -> Value {
        let settings = match self.mode {
            Mode::Server => json!({
                "bytes": self.settings.bytes,
                "timeout_s": self.settings.timeout.as_secs_f64(),
                "clients": self.settings.clients,
            }),
            Mode::Client => json!({
                "bytes": self.settings.bytes,
                "timeout_s": self.settings.timeout.as_secs_f64(),
                "greeting": String::from_utf8_lossy(&self.settings.greeting),
                "wait_s": self.settings.wait.as_secs_f64(),
            }),
        };
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|check| {
                let figures: Map<String, Value> = check
                    .figures
                    .iter()
                    .map(|figure| (figure.key.to_string(), number(figure)))
                    .collect();
                json!({
                    "name": check.name,
                    "status": check.status.as_str(),
                    "message": check.message,
                    "seconds": round(check.took.as_secs_f64(), 3),
                    "figures": figures,
                })
            })
            .collect();
        json!({
            "version": JSON_VERSION,
            "mode": match self.mode { Mode::Server => "server", Mode::Client => "client" },
            "peer": self.peer.map(|peer| peer.to_string()),
            "settings": settings,
            "checks": checks,
            "summary": {
                "passed": self.count(Status::Pass),
                "failed": self.count(Status::Fail),
                "skipped": self.count(Status::Skip),
            },
        })
    }
}

/// Counts and bytes as integers, the rest rounded to what is worth reading.
fn number(figure: &Figure) -> Value {
    match figure.unit {
        Unit::Count | Unit::Bytes => json!(figure.value as u64),
        Unit::Seconds => json!(round(figure.value, 4)),
        _ => json!(round(figure.value, 2)),
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// `sent 1.0 MiB, in 52.3 ms, throughput 19.1 MiB/s`.
fn figures(figures: &[Figure]) -> String {
    let parts: Vec<String> = figures.iter().map(figure).collect();
    parts.join(", ")
}

fn figure(figure: &Figure) -> String {
    let value = figure.value;
    let shown = match figure.unit {
        Unit::Count => format!("{}", value as u64),
        Unit::Bytes => bytes(value as usize),
        Unit::Seconds => duration(Duration::from_secs_f64(value.max(0.0))),
        Unit::Millis => duration(Duration::from_secs_f64(value.max(0.0) / 1e3)),
        Unit::Micros => duration(Duration::from_secs_f64(value.max(0.0) / 1e6)),
        Unit::MibPerSecond => format!("{value:.1} MiB/s"),
        Unit::PerSecond => format!("{value:.0}/s"),
    };
    format!("{} {shown}", figure.label)
}

/// `640 us`, `12.5 ms`, `3.20 s`.
pub(crate) fn duration(time: Duration) -> String {
    let micros = time.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} us")
    } else if micros < 1e6 {
        format!("{:.1} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// `900 B`, `64.0 KiB`, `1.0 MiB`.
pub(crate) fn bytes(count: usize) -> String {
    match count {
        0..1024 => format!("{count} B"),
        1024..0x10_0000 => format!("{:.1} KiB", count as f64 / 1024.0),
        _ => format!("{:.1} MiB", count as f64 / f64::from(1 << 20)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::*;

    fn report() -> Report {
        Report {
            mode: Mode::Server,
            peer: Some("127.0.0.1:5001".parse().unwrap()),
            settings: Settings::default(),
            checks: vec![
                Outcome {
                    name: "random-binary",
                    status: Status::Pass,
                    message: "came back".into(),
                    figures: vec![
                        Figure::bytes("bytes", "sent", 1 << 20),
                        Figure::seconds("time_s", "in", Duration::from_millis(52)),
                        Figure::rate(1 << 20, Duration::from_millis(500)),
                    ],
                    took: Duration::from_millis(60),
                },
                Outcome {
                    name: "partial-send",
                    status: Status::Fail,
                    message: "lost 10 bytes at offset 20".into(),
                    figures: Vec::new(),
                    took: Duration::from_secs(1),
                },
            ],
        }
    }

    #[test]
    fn a_line_has_status_name_message_and_figures() {
        let report = report();
        assert_eq!(
            report.checks[0].line(),
            "PASS  random-binary  came back (sent 1.0 MiB, in 52.0 ms, throughput 2.0 MiB/s)"
        );
        assert_eq!(
            report.checks[1].line(),
            "FAIL  partial-send   lost 10 bytes at offset 20"
        );
    }

    #[test]
    fn the_table_shows_figures_of_passes_and_messages_of_failures() {
        assert_eq!(
            report().table(),
            "check          status  figures\n\
             random-binary  PASS    sent 1.0 MiB, in 52.0 ms, throughput 2.0 MiB/s\n\
             partial-send   FAIL    lost 10 bytes at offset 20\n\
             \n\
             2 checks: 1 passed, 1 failed, 0 skipped\n"
        );
    }

    #[test]
    fn json_follows_the_documented_schema() {
        let json = report().to_json();
        assert_eq!(json["version"], 1);
        assert_eq!(json["mode"], "server");
        assert_eq!(json["peer"], "127.0.0.1:5001");
        assert_eq!(json["settings"]["bytes"], 1 << 20);
        assert_eq!(json["settings"]["timeout_s"], 10.0);
        assert_eq!(json["settings"]["clients"], 3);
        let check = &json["checks"][0];
        assert_eq!(check["name"], "random-binary");
        assert_eq!(check["status"], "PASS");
        assert_eq!(check["seconds"], 0.06);
        assert_eq!(check["figures"]["bytes"], 1 << 20);
        assert_eq!(check["figures"]["time_s"], 0.052);
        assert_eq!(check["figures"]["mib_per_s"], 2.0);
        assert_eq!(json["checks"][1]["status"], "FAIL");
        assert_eq!(json["checks"][1]["message"], "lost 10 bytes at offset 20");
        assert_eq!(json["summary"]["passed"], 1);
        assert_eq!(json["summary"]["failed"], 1);
        assert_eq!(json["summary"]["skipped"], 0);
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration(Duration::from_micros(640)), "640 us");
        assert_eq!(duration(Duration::from_micros(12_500)), "12.5 ms");
        assert_eq!(duration(Duration::from_millis(3200)), "3.20 s");
        assert_eq!(bytes(900), "900 B");
        assert_eq!(bytes(64 << 10), "64.0 KiB");
        assert_eq!(bytes(4 << 20), "4.0 MiB");
    }
}
