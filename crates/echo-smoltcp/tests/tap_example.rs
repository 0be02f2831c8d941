//! The command line of the `tap` and `tap_async` examples, which needs no TAP device: help
//! and mistakes are answered before the device is opened, the same by both.
#![cfg(target_os = "linux")]

#[path = "common/example.rs"]
mod example;

use std::process::{Command, Output};

/// Runs example `name` (built by `cargo test` next to the test binaries) with `args`.
fn tap(name: &str, args: &[&str]) -> Output {
    Command::new(example::path(name))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_prints_the_usage_and_exits_0_wherever_it_is_asked() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["server", "--help"],
        &["client", "--iface", "tap0", "--help"],
    ] {
        for name in example::EXAMPLES {
            let output = tap(name, args);
            assert_eq!(output.status.code(), Some(0), "{name} {args:?}");
            let stdout = String::from_utf8(output.stdout).unwrap();
            assert!(stdout.starts_with("usage:"), "{name} {args:?}: {stdout}");
            assert!(stdout.contains("--idle-timeout SECS"), "{stdout}");
            assert!(stdout.contains("--loss PERCENT"), "{stdout}");
        }
    }
}

#[test]
fn mistakes_say_what_is_wrong_and_exit_2() {
    for (args, message) in [
        (&["serve"][..], "unknown mode serve: server or client"),
        (&["server", "--port"], "--port needs a value"),
        (&["server", "--colour", "red"], "unknown option --colour"),
        (
            &["server", "--idle-timeout", "soon"],
            "--idle-timeout soon:",
        ),
        (
            &[
                "client",
                "--iface",
                "tap0",
                "--ip",
                "10.0.0.2/24",
                "--host",
                "10.0.0.1",
                "--idle-timeout",
                "5",
            ],
            "--idle-timeout is a server option",
        ),
        (&["server", "--iface", "tap0"], "missing --ip"),
        (
            &["server", "--loss", "101"],
            "--loss 101: expected a percentage, 0 to 100",
        ),
    ] {
        for name in example::EXAMPLES {
            let output = tap(name, args);
            assert_eq!(output.status.code(), Some(2), "{name} {args:?}");
            let stderr = String::from_utf8(output.stderr).unwrap();
            assert!(stderr.starts_with(message), "{name} {args:?}: {stderr}");
            assert!(stderr.contains("usage:"), "{stderr}");
        }
    }
}
