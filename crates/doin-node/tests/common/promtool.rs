//! `promtool check metrics` for tests: included by `tests/common/mod.rs` and, with
//! `#[path]`, by the library's own metrics test, so both check scrapes the same way.

use std::process::{Command, Stdio};

/// Set to 1 (scripts/test.sh does) to fail, not skip, when an external test tool is missing.
pub const REQUIRE_TOOLS_ENV: &str = "DOIN_REQUIRE_TEST_TOOLS";

/// Asserts that `promtool check metrics` (Debian package `prometheus`, installed by
/// scripts/setup-test-tools.sh) accepts `text`, a scrape in the Prometheus text format: it
/// parses it and lints names, types, units and help (a lint problem exits non-zero too).
/// Skipped, with a note, when promtool is missing, unless DOIN_REQUIRE_TEST_TOOLS=1.
pub fn assert_promtool_accepts(text: &str) {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let why =
            "promtool not found (Debian package `prometheus`; run scripts/setup-test-tools.sh)";
        if std::env::var(REQUIRE_TOOLS_ENV).as_deref() == Ok("1") {
            panic!("{why}, and {REQUIRE_TOOLS_ENV}=1 requires it");
        }
        eprintln!("skipping `promtool check metrics`: {why}");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- input ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
