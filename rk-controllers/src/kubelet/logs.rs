//! Container logs: each container instance's stdout and stderr go to one
//! file in the CRI log format (`<RFC 3339 time> <stream> F <line>`), rotated
//! when it grows past a size limit; readers turn them back into what
//! `kubectl logs` shows.
//!
//! Files live at `<pod dir>/logs/<container>/<restart count>.log`; the file
//! rotated away is `<restart count>.log.1` (one is kept).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The size at which a log file is rotated.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// The log file of a container instance.
pub fn log_path(pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
    pod_dir
        .join("logs")
        .join(container)
        .join(format!("{restart_count}.log"))
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Writes one container instance's log, rotating it past a size limit.
pub struct LogWriter {
    path: PathBuf,
    max_bytes: u64,
    inner: Mutex<(File, u64)>,
}

impl LogWriter {
    /// Create (truncate) the log file at `path`.
    pub fn create(path: &Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(path)?;
        Ok(Self {
            path: path.to_owned(),
            max_bytes,
            inner: Mutex::new((file, 0)),
        })
    }

    /// Append one line (without its newline) from `stream`.
    pub fn write_line(&self, stream: Stream, line: &[u8]) {
        let now = jiff::Timestamp::now();
        let mut record = Vec::with_capacity(line.len() + 48);
        record.extend_from_slice(
            format!(
                "{} {} F ",
                now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                stream.as_str()
            )
            .as_bytes(),
        );
        record.extend_from_slice(line);
        record.push(b'\n');
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if guard.1 + record.len() as u64 > self.max_bytes && guard.1 > 0 {
            let rotated = rotated_path(&self.path);
            let reopened =
                std::fs::rename(&self.path, &rotated).and_then(|()| File::create(&self.path));
            match reopened {
                Ok(f) => *guard = (f, 0),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "rotating a log failed")
                }
            }
        }
        match guard.0.write_all(&record) {
            Ok(()) => guard.1 += record.len() as u64,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "writing a log line failed")
            }
        }
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub time: Option<jiff::Timestamp>,
    /// The raw timestamp text.
    pub time_text: String,
    /// The line (without newline).
    pub text: String,
}

/// Parse one CRI-format line; lines in another format are kept whole.
pub fn parse_line(raw: &str) -> LogLine {
    let mut parts = raw.splitn(4, ' ');
    let (Some(time), Some(_stream), Some(_tag), Some(text)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return LogLine {
            time: None,
            time_text: String::new(),
            text: raw.to_owned(),
        };
    };
    LogLine {
        time: time.parse().ok(),
        time_text: time.to_owned(),
        text: text.to_owned(),
    }
}

/// What a reader wants from a log (the `/containerLogs` query).
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep following the log as it grows.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines newer than this.
    pub since: Option<jiff::Timestamp>,
    /// Prefix each line with its timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

/// Render a parsed line as `kubectl logs` prints it.
pub fn render(line: &LogLine, options: &LogOptions) -> Option<String> {
    if let (Some(since), Some(time)) = (options.since, line.time)
        && time < since
    {
        return None;
    }
    Some(if options.timestamps && !line.time_text.is_empty() {
        format!("{} {}\n", line.time_text, line.text)
    } else {
        format!("{}\n", line.text)
    })
}

/// Read the whole log of one container instance (rotated part first),
/// applying `since`, `tailLines` and `timestamps`; returns the text and the
/// byte offset in the current file where following should continue.
pub fn read_log(path: &Path, options: &LogOptions) -> io::Result<(String, u64)> {
    let mut lines = Vec::new();
    let rotated = rotated_path(path);
    if rotated.exists() {
        read_lines(&rotated, 0, &mut lines)?;
    }
    let end = read_lines(path, 0, &mut lines)?;
    let rendered: Vec<String> = lines
        .iter()
        .filter_map(|l| render(&parse_line(l), options))
        .collect();
    let skip = options
        .tail_lines
        .map_or(0, |n| rendered.len().saturating_sub(n));
    Ok((rendered[skip..].concat(), end))
}

/// Append the complete lines of `path` from byte `offset` to `out`; returns
/// the offset just after the last complete line.
pub fn read_lines(path: &Path, offset: u64, out: &mut Vec<String>) -> io::Result<u64> {
    use std::io::Seek;
    let mut file = OpenOptions::new().read(true).open(path)?;
    file.seek(io::SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut pos = offset;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        pos += n as u64;
        buf.pop();
        out.push(String::from_utf8_lossy(&buf).into_owned());
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_tail_applies() {
        let dir = std::env::temp_dir().join(format!("rk-logs-test-{}", std::process::id()));
        let path = dir.join("c").join("0.log");
        let w = LogWriter::create(&path, DEFAULT_MAX_LOG_BYTES).unwrap();
        for i in 0..5 {
            w.write_line(Stream::Stdout, format!("line {i}").as_bytes());
        }
        let (text, _) = read_log(
            &path,
            &LogOptions {
                tail_lines: Some(2),
                ..LogOptions::default()
            },
        )
        .unwrap();
        assert_eq!(text, "line 3\nline 4\n");
        let (text, _) = read_log(
            &path,
            &LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..LogOptions::default()
            },
        )
        .unwrap();
        assert!(text.ends_with("Z line 4\n"), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rotation_keeps_the_previous_chunk_readable() {
        let dir = std::env::temp_dir().join(format!("rk-logs-rot-{}", std::process::id()));
        let path = dir.join("0.log");
        let w = LogWriter::create(&path, 200).unwrap();
        for i in 0..10 {
            w.write_line(Stream::Stderr, format!("entry {i}").as_bytes());
        }
        assert!(rotated_path(&path).exists());
        let (text, _) = read_log(&path, &LogOptions::default()).unwrap();
        assert!(text.ends_with("entry 9\n"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
