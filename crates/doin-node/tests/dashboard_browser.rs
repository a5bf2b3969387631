//! The live dashboard against the real `doin-node` binary (fast blocks, solo mode):
//! - `/events` streams `status` and then `block` + `status` per block;
//! - `/domains/{id}/history` lists the accepted optimae the node mined;
//! - in headless Chromium (Debian's `chromium` package), `/dashboard` loads without console
//!   messages or script errors, shows the node's real height, and the height advances as
//!   blocks are mined, without a reload. A screenshot is kept in
//!   `target/test-artifacts/dashboard.png`.
//!
//! Without Chromium the browser test is skipped with a printed reason, or fails when
//! `DOIN_REQUIRE_TEST_TOOLS=1` (as `scripts/test.sh` sets it; `scripts/setup-test-tools.sh`
//! installs the package).
//!
//! How the browser is driven: `--dump-dom` with `--virtual-time-budget` prints the DOM once
//! the page is idle, and virtual time does not advance while a request is open. The page is
//! loaded as `/dashboard?live_blocks=3`, which closes its event stream after three live
//! blocks: Chromium waits (in real time) for those blocks, then dumps. The page records its
//! first height and its live updates as attributes of `<html>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{write_solo_config, Node};

/// Longest a Chromium run may take (start-up is about a second; the page waits for three
/// blocks of 150-300 ms).
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

fn get_json(port: u16, path: &str) -> serde_json::Value {
    ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .into_json()
        .unwrap()
}

#[test]
fn events_stream_status_then_blocks_and_history_lists_champions() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&write_solo_config(
        dir.path(),
        serde_json::json!({"node_label": "dashboard-test"}),
    ));
    let port = node.port;
    node.wait_height(1, Duration::from_secs(60));

    let resp = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(10))
        .build()
        .get(&format!("http://127.0.0.1:{port}/events"))
        .call()
        .unwrap();
    assert_eq!(resp.content_type(), "text/event-stream");
    let mut lines = BufReader::new(resp.into_reader()).lines();
    let mut events: Vec<(String, serde_json::Value)> = Vec::new();
    let mut name = String::new();
    let start = Instant::now();
    while events.iter().filter(|(n, _)| n == "block").count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "{events:?}");
        let line = lines.next().expect("stream ended").unwrap();
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((name.clone(), serde_json::from_str(data).unwrap()));
        }
    }
    assert_eq!(events[0].0, "status", "the stream opens with a status");
    let first_height = events[0].1["chain_height"].as_u64().unwrap();
    let blocks: Vec<&serde_json::Value> = events
        .iter()
        .filter(|(n, _)| n == "block")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        blocks[0]["height"].as_u64().unwrap(),
        first_height + 1,
        "no block lost or repeated between the status and the stream: {events:?}"
    );
    assert_eq!(
        blocks[1]["height"].as_u64(),
        blocks[0]["height"].as_u64().map(|h| h + 1)
    );
    for key in [
        "hash",
        "time_ms",
        "tx_count",
        "minted",
        "my_reward",
        "verdicts",
        "in_flight",
    ] {
        assert!(
            !blocks[0][key].is_null(),
            "block event without {key}: {}",
            blocks[0]
        );
    }
    // Each block is followed by the status after it.
    let after_first = events
        .iter()
        .skip_while(|(n, v)| !(n == "block" && v["height"] == blocks[0]["height"]))
        .nth(1)
        .unwrap();
    assert_eq!(after_first.0, "status");
    assert!(after_first.1["chain_height"].as_u64() >= blocks[0]["height"].as_u64());

    // The solo node verifies its own optimae: wait for a champion, then find it in the history.
    let start = Instant::now();
    let champion = loop {
        let status = get_json(port, "/status");
        if let Some(c) = status["domains"][0]["champion"].as_object() {
            break c.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no champion: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let history = get_json(port, "/domains/quadratic/history");
    let entries = history["entries"].as_array().unwrap();
    let last = entries.last().expect("an accepted optimae");
    assert_eq!(last["optimae"], champion["commitment"], "{history}");
    assert_eq!(last["performance"], champion["performance"]);
    assert_eq!(last["height"], champion["height"]);
    assert_eq!(last["verdict"], "accepted");
    assert!(entries.iter().all(|e| e["verdict"] == "accepted"));
    assert_eq!(history["next_before"], serde_json::Value::Null);
    assert_eq!(history["target_performance"], -5.0);
    let heights: Vec<u64> = entries
        .iter()
        .map(|e| e["height"].as_u64().unwrap())
        .collect();
    assert!(
        heights.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {heights:?}"
    );

    // Errors are the API's JSON errors.
    let err = ureq::get(&format!("http://127.0.0.1:{port}/domains/nope/history"))
        .call()
        .unwrap_err();
    let ureq::Error::Status(404, resp) = err else {
        panic!("{err}")
    };
    let body: serde_json::Value = resp.into_json().unwrap();
    assert_eq!(body["error"], "unknown_domain");
    let err = ureq::get(&format!(
        "http://127.0.0.1:{port}/domains/quadratic/history?limit=5000"
    ))
    .call()
    .unwrap_err();
    assert!(matches!(err, ureq::Error::Status(400, _)), "{err}");

    // The page and its assets are embedded and served with their types.
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let resp = ureq::get(&format!("http://127.0.0.1:{port}{path}"))
            .call()
            .unwrap();
        assert_eq!(resp.content_type(), kind, "{path}");
    }
    // Shutdown is not held up by the open event stream (`stop` kills after 10 s).
    let stopping = Instant::now();
    let log = node.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?} with an event stream open",
        stopping.elapsed()
    );
    assert!(!log.contains("panicked"), "{log}");
    drop(lines);
}

/// Where Chromium is, if installed: `DOIN_CHROMIUM`, else the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DOIN_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// Runs headless Chromium with `args` (bounded by [`BROWSER_LIMIT`]); returns stdout and
/// stderr.
fn run_chromium(browser: &Path, profile: &Path, args: &[&str]) -> (String, String) {
    let out = profile.with_extension("out");
    let err = profile.with_extension("err");
    let mut child = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ran past {BROWSER_LIMIT:?}: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    )
}

/// The value of attribute `name` in the first tag of `html` that starts with `tag_start`.
fn attr(html: &str, tag_start: &str, name: &str) -> Option<String> {
    let tag_at = html.find(tag_start)?;
    let tag = &html[tag_at..tag_at + html[tag_at..].find('>')?];
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

fn num_attr(html: &str, tag_start: &str, name: &str) -> u64 {
    attr(html, tag_start, name)
        .unwrap_or_else(|| panic!("no {name} on {tag_start}: {html}"))
        .parse()
        .unwrap()
}

#[test]
fn dashboard_in_headless_chromium_shows_the_real_height_and_follows_new_blocks() {
    let Some(browser) = chromium() else {
        let why = "chromium is not installed (Debian package `chromium`; \
                   scripts/setup-test-tools.sh installs it)";
        if std::env::var("DOIN_REQUIRE_TEST_TOOLS").is_ok_and(|v| v == "1") {
            panic!("DOIN_REQUIRE_TEST_TOOLS=1 but {why}");
        }
        eprintln!("skipped: {why}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&write_solo_config(
        dir.path(),
        serde_json::json!({"node_label": "dashboard-test"}),
    ));
    let port = node.port;
    let before = node.wait_height(2, Duration::from_secs(60))["chain_height"]
        .as_u64()
        .unwrap();

    let url = format!("http://127.0.0.1:{port}/dashboard?live_blocks=3");
    let (dom, log) = run_chromium(
        &browser,
        &dir.path().join("profile"),
        &["--virtual-time-budget=5000", "--dump-dom", &url],
    );
    let after = node.status().unwrap()["chain_height"].as_u64().unwrap();

    // Chromium logs every console message as `...:CONSOLE...] "text", source: ...`; the page
    // logs nothing unless something went wrong.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    assert_eq!(
        attr(&dom, "<html", "data-errors").as_deref(),
        Some("0"),
        "{dom}"
    );
    assert_eq!(
        attr(&dom, "<html", "data-stream").as_deref(),
        Some("closed"),
        "{dom}"
    );
    let initial = num_attr(&dom, "<html", "data-initial-height");
    let shown = num_attr(&dom, "<span id=\"height\"", "data-value");
    let text = dom
        .split("<span id=\"height\"")
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .unwrap();
    assert_eq!(
        text,
        shown.to_string(),
        "the height shown is the one recorded"
    );
    assert!(
        (before..=after).contains(&initial),
        "first render showed height {initial}, the node was at {before}..={after}"
    );
    assert!(
        shown >= initial + 3 && shown <= after,
        "the height advanced live: first {initial}, now {shown}, node at {after}"
    );
    assert_eq!(num_attr(&dom, "<html", "data-live-updates"), 3);
    assert!(
        dom.contains("data-domain=\"quadratic\""),
        "the domain panel is drawn"
    );

    // Keep a screenshot as an artifact (the layout with live data, for people to look at).
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let url = format!("http://127.0.0.1:{port}/dashboard?live_blocks=2");
    let (_, log) = run_chromium(
        &browser,
        &dir.path().join("profile-shot"),
        &[
            "--window-size=1280,1200",
            "--virtual-time-budget=5000",
            &format!("--screenshot={}", png.display()),
            &url,
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot ({e}): {log}"));
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("screenshot: {}", png.display());
    node.stop();
}
