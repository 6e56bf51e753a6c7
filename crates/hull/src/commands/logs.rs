//! `hull logs`: the output of a detached container (its `log` file), optionally followed
//! until the container stops.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use super::Ctx;
use crate::error::{Error, Result};

const EXAMPLES: &str = "\
Examples:
  hull logs web
  hull logs -f --tail 20 web";

/// Show the output of a detached container.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all": everything).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// The container (id, id prefix or name).
    pub container: String,
}

pub fn logs(ctx: &Ctx, a: LogsArgs) -> Result<i32> {
    let tail: Option<usize> =
        match a.tail.as_str() {
            "all" => None,
            n => Some(n.parse().map_err(|_| {
                Error::Invalid(format!("--tail {n:?}: a number of lines or \"all\""))
            })?),
        };
    let c = ctx.containers().find(&a.container)?;
    let Some(path) = c.record.log_path.clone() else {
        return Err(Error::Failed(format!(
            "container {} ran in the foreground: its output went to the terminal and was not logged (hull run -d keeps a log)",
            a.container
        )));
    };
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        // Removed meanwhile (rm, --rm).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
    };
    let mut out = std::io::stdout().lock();
    let mut text = Vec::new();
    f.read_to_end(&mut text)
        .map_err(Error::io(format!("reading {}", path.display())))?;
    let start = match tail {
        None => 0,
        Some(n) => tail_start(&text, n),
    };
    if out
        .write_all(&text[start..])
        .and_then(|()| out.flush())
        .is_err()
    {
        return Ok(0);
    }
    if !a.follow {
        return Ok(0);
    }
    let rt = ctx.runtime();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Read what is there; stop once the container has stopped and nothing is left.
        let alive = super::status(&rt, &c).alive();
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        return Ok(0);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
            }
        }
        if !alive {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
        // A truncated log starts over.
        let pos = f.stream_position().unwrap_or(0);
        if std::fs::metadata(&path)
            .map(|m| m.len() < pos)
            .unwrap_or(false)
        {
            let _ = f.seek(SeekFrom::Start(0));
        }
    }
}

/// Where the last `n` lines of `text` start.
fn tail_start(text: &[u8], n: usize) -> usize {
    if n == 0 {
        return text.len();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_counts_lines() {
        let t = b"a\nb\nc\n";
        assert_eq!(&t[super::tail_start(t, 2)..], b"b\nc\n");
        assert_eq!(&t[super::tail_start(t, 5)..], t);
        assert_eq!(super::tail_start(t, 0), t.len());
        assert_eq!(&b"a\nb"[super::tail_start(b"a\nb", 1)..], b"b");
    }
}
