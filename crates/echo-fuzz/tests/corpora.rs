//! Every committed input of the fuzz targets, through the same checks the fuzzers run: the
//! seed corpora (`fuzz/corpus/TARGET/`) and every input a fuzzer once failed on
//! (`fuzz/regressions/TARGET/`, each a regression test).

use std::path::PathBuf;

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect();
    inputs.sort();
    inputs
}

fn replay(target: &str, check: fn(&[u8])) {
    let seeds = inputs("corpus", target);
    assert!(!seeds.is_empty(), "no seed corpus for {target}");
    for (path, data) in seeds.iter().chain(&inputs("regressions", target)) {
        let result = std::panic::catch_unwind(|| check(data));
        assert!(result.is_ok(), "{} fails", path.display());
    }
}

#[test]
fn dhcp() {
    replay("dhcp", echo_fuzz::dhcp::check);
}

#[test]
fn server() {
    replay("server", echo_fuzz::roles::check_server);
}

#[test]
fn client() {
    replay("client", echo_fuzz::roles::check_client);
}

#[test]
fn decoder() {
    replay("decoder", echo_fuzz::screen::check_decoder);
}

#[test]
fn screen() {
    replay("screen", echo_fuzz::screen::check_screen);
}

#[test]
fn smoltcp() {
    replay("smoltcp", echo_fuzz::smoltcp::check);
}

#[test]
fn async_server() {
    replay("async_server", echo_fuzz::asynch::check_server);
}

#[test]
fn async_client() {
    replay("async_client", echo_fuzz::asynch::check_client);
}
