//! One child process speaking JSON lines: spawning, bounded line reads, per-call deadlines.
//!
//! # Why three helper threads
//!
//! `std` has no read or write with a timeout on pipes, and a plugin process can stop reading
//! its stdin (a full pipe blocks our write) or stop answering (our read blocks). So each
//! process gets a writer thread, a stdout reader thread and a stderr tail thread; the calling
//! thread only waits on a channel with a deadline. When the deadline passes, the child is
//! killed, which unblocks both pipe threads (they see EOF or a broken pipe and end).
//!
//! Memory is bounded: the reader never buffers more than `max_line_bytes` of one line (it
//! reports [`Incoming::TooLong`] and stops instead), its channel holds one line, and the
//! stderr thread keeps only the last [`STDERR_TAIL_BYTES`].

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ExternalError, Method};

/// Bytes of the child's stderr kept for error messages (the end of a Python traceback).
pub(crate) const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// How long a closed-stdin child may take to exit on its own before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(250);
/// How long to wait for the exit status of a child that closed its stdout.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(1);
/// Most bytes of an offending line quoted in an error.
const QUOTE_BYTES: usize = 120;
/// How long to wait for a dead child's stderr to drain before quoting it (bounded: a
/// grandchild may hold the pipe open).
const STDERR_DRAIN_WAIT: Duration = Duration::from_millis(500);

/// The end of the child's stderr, and whether the pipe has closed.
#[derive(Debug, Default)]
struct StderrTail {
    bytes: VecDeque<u8>,
    closed: bool,
}

/// What the stdout reader thread saw.
#[derive(Debug)]
enum Incoming {
    /// One line, without its `\n`.
    Line(Vec<u8>),
    /// A line longer than the limit; the reader stopped.
    TooLong,
    /// The child closed its stdout (usually: it exited).
    Eof,
    /// Reading failed.
    Io(String),
}

/// How to start the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spawn {
    /// Program and arguments (no shell).
    pub(crate) command: Vec<String>,
    /// Working directory, when not the node's.
    pub(crate) working_dir: Option<String>,
    /// Longest line accepted in either direction, `\n` excluded.
    pub(crate) max_line_bytes: usize,
}

/// A running plugin process.
pub(crate) struct Process {
    child: Child,
    /// `None` once stdin is closed (on drop).
    to_child: Option<SyncSender<Vec<u8>>>,
    from_child: Receiver<Incoming>,
    stderr_tail: Arc<Mutex<StderrTail>>,
    max_line_bytes: usize,
    next_id: u64,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.child.id())
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl Process {
    /// Starts the child with piped stdio and its three helper threads.
    pub(crate) fn spawn(spec: &Spawn) -> Result<Process, ExternalError> {
        let (program, args) = spec
            .command
            .split_first()
            .ok_or_else(|| ExternalError::Config {
                field: "command".into(),
                reason: "must name a program".into(),
            })?;
        let spawn_error = |reason: String| ExternalError::Spawn {
            program: program.clone(),
            reason,
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &spec.working_dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|e| spawn_error(e.to_string()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill(&mut child);
            return Err(spawn_error("stdio pipes missing".into()));
        };

        let (to_child, writer_rx) = mpsc::sync_channel::<Vec<u8>>(1);
        let (reader_tx, from_child) = mpsc::sync_channel::<Incoming>(1);
        let stderr_tail = Arc::new(Mutex::new(StderrTail::default()));
        let max = spec.max_line_bytes;
        let tail = Arc::clone(&stderr_tail);
        let started = spawn_thread("doin-ext-write", move || write_lines(stdin, writer_rx))
            .and_then(|_| spawn_thread("doin-ext-read", move || read_lines(stdout, max, reader_tx)))
            .and_then(|_| spawn_thread("doin-ext-stderr", move || keep_tail(stderr, tail)));
        if let Err(e) = started {
            kill(&mut child);
            return Err(spawn_error(format!("cannot start a helper thread: {e}")));
        }
        Ok(Process {
            child,
            to_child: Some(to_child),
            from_child,
            stderr_tail,
            max_line_bytes: max,
            next_id: 1,
        })
    }

    /// Whether the child is still running (a child that exited between calls is restarted).
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends one request and waits up to `timeout` for its response; returns its `result`.
    ///
    /// A [fatal](ExternalError::is_fatal) error leaves the stream in an unknown state: the
    /// caller must [`kill`](Process::kill) the process.
    pub(crate) fn call(
        &mut self,
        method: Method,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ExternalError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let request = serde_json::json!({"id": id, "method": method.as_str(), "params": params});
        let mut line = serde_json::to_vec(&request).map_err(|e| ExternalError::Io {
            method,
            reason: format!("cannot encode the request: {e}"),
        })?;
        if line.len() > self.max_line_bytes {
            return Err(ExternalError::RequestTooLarge {
                method,
                bytes: line.len(),
                limit: self.max_line_bytes,
            });
        }
        line.push(b'\n');
        let deadline = Instant::now() + timeout;
        let timed_out = || ExternalError::Timeout {
            method,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        match self.to_child.as_ref().map(|tx| tx.try_send(line)) {
            Some(Ok(())) => {}
            // The writer still holds the previous request: the child stopped reading.
            Some(Err(TrySendError::Full(_))) => return Err(timed_out()),
            // The writer ended: the child closed its stdin or exited.
            Some(Err(TrySendError::Disconnected(_))) | None => return Err(self.exited(method)),
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.from_child.recv_timeout(remaining) {
                Ok(Incoming::Line(line)) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return parse_response(method, id, &line);
                }
                Ok(Incoming::TooLong) => {
                    return Err(ExternalError::LineTooLong {
                        method,
                        limit: self.max_line_bytes,
                    })
                }
                Ok(Incoming::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.exited(method))
                }
                Ok(Incoming::Io(reason)) => return Err(ExternalError::Io { method, reason }),
                Err(RecvTimeoutError::Timeout) => return Err(timed_out()),
            }
        }
    }

    /// Kills the child at once and reaps it.
    pub(crate) fn kill(&mut self) {
        self.to_child = None;
        kill(&mut self.child);
    }

    /// The error for a child that closed its stdout: its exit status and stderr tail.
    fn exited(&mut self, method: Method) -> ExternalError {
        let start = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() < EXIT_STATUS_WAIT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => break None,
            }
        };
        let status = match status {
            Some(status) => describe_status(status),
            None => {
                self.kill();
                "closed its stdout and was killed".to_string()
            }
        };
        ExternalError::Exited {
            method,
            status,
            stderr_tail: self.stderr_tail(),
        }
    }

    /// The last bytes a dead child wrote to stderr, as text: waits (bounded) until the
    /// stderr thread has drained the pipe, so the end of a traceback is not lost.
    fn stderr_tail(&self) -> String {
        let start = Instant::now();
        loop {
            {
                let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.closed || start.elapsed() >= STDERR_DRAIN_WAIT {
                    let (a, b) = tail.bytes.as_slices();
                    let bytes = [a, b].concat();
                    return String::from_utf8_lossy(&bytes).trim().to_string();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Process {
    /// Closes stdin (the protocol's "please exit"), gives the child [`EXIT_GRACE`] to finish,
    /// then kills it. Never leaves a zombie.
    fn drop(&mut self) {
        self.to_child = None;
        let start = Instant::now();
        while start.elapsed() < EXIT_GRACE {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                _ => return,
            }
        }
        kill(&mut self.child);
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn describe_status(status: ExitStatus) -> String {
    status.to_string()
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(|_| ())
}

/// Writes each request line to the child's stdin; ends when the channel closes or the pipe
/// breaks (dropping stdin closes it, which asks the child to exit).
fn write_lines(mut stdin: ChildStdin, requests: Receiver<Vec<u8>>) {
    for line in requests {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
}

/// Reads `\n`-terminated lines of at most `max` bytes; never buffers more than one line.
fn read_lines(stdout: ChildStdout, max: usize, lines: SyncSender<Incoming>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = lines.send(Incoming::Io(e.to_string()));
                return;
            }
        };
        if available.is_empty() {
            // A partial last line is dropped: the child died mid-response.
            let _ = lines.send(Incoming::Eof);
            return;
        }
        let (chunk, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        if line.len().saturating_add(chunk.len()) > max {
            let _ = lines.send(Incoming::TooLong);
            return;
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(complete);
        reader.consume(used);
        if complete
            && lines
                .send(Incoming::Line(std::mem::take(&mut line)))
                .is_err()
        {
            return;
        }
    }
}

/// Keeps the last [`STDERR_TAIL_BYTES`] of the child's stderr; marks the tail closed at the
/// end of the pipe.
fn keep_tail(mut stderr: impl Read, tail: Arc<Mutex<StderrTail>>) {
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                tail.bytes.extend(buf.iter().take(n));
                let excess = tail.bytes.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.bytes.drain(..excess);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    tail.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
}

/// Checks the envelope of a response line and returns its `result`.
fn parse_response(method: Method, id: u64, line: &[u8]) -> Result<Value, ExternalError> {
    let bad_json = |reason: String| ExternalError::BadJson {
        method,
        reason,
        line: quote(line),
    };
    let value: Value = serde_json::from_slice(line).map_err(|e| bad_json(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(bad_json("not a JSON object".into()));
    };
    match object.get("id") {
        Some(Value::Number(n)) if n.as_u64() == Some(id) => {}
        other => {
            return Err(ExternalError::WrongId {
                method,
                expected: id,
                got: other.map_or_else(|| "none".to_string(), Value::to_string),
            })
        }
    }
    match (object.remove("result"), object.remove("error")) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => Err(super::reply_error(method, &error)),
        (Some(_), Some(_)) => Err(ExternalError::BadResponse {
            method,
            reason: "has both \"result\" and \"error\"".into(),
        }),
        (None, None) => Err(ExternalError::BadResponse {
            method,
            reason: "has neither \"result\" nor \"error\"".into(),
        }),
    }
}

/// The start of an offending line, for an error message.
fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(QUOTE_BYTES)]);
    if line.len() > QUOTE_BYTES {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}
