//! hull's containers: `<root>/containers/<id>/`, each holding hull's record (`container.json`),
//! the OCI bundle (`bundle/config.json`, `bundle/rootfs` = the overlay mount point), the
//! overlay's `upper/` and `work/`, the output of a detached container (`log`) and a `lock`
//! serialising what changes it. Containers are named by id, unique id prefix or name.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container name or id prefix {query:?} is ambiguous: it matches {}", ids.join(", "))]
    Ambiguous { query: String, ids: Vec<String> },
    #[error(
        "the container name {name:?} is already in use by container {id}: remove that container (hull rm {name}) or choose another name"
    )]
    NameInUse { name: String, id: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a container record: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("timed out after {0:?} waiting for the lock {1}")]
    LockTimeout(Duration, PathBuf),
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What hull knows about a container (`container.json`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    /// The process's command line.
    pub command: Vec<String>,
    /// RFC 3339.
    pub created: String,
    /// `-p` values, as given.
    #[serde(default)]
    pub ports: Vec<String>,
    /// `-v` values, as given.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Output of a detached container.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub detached: bool,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub interactive: bool,
    /// The signal `hull stop` sends first (image StopSignal or `--stop-signal`).
    pub stop_signal: String,
    pub network: String,
    pub hostname: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The `hull` process watching a detached container (it records the exit and unmounts).
    #[serde(default)]
    pub supervisor_pid: Option<i32>,
}

impl Record {
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// One container: its directory and record.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.record.id
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("bundle/rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }
    /// hull-runtime's log (`--log`), where its errors are found.
    pub fn runtime_log(&self) -> PathBuf {
        self.dir.join("runtime.log")
    }
    fn record_path(&self) -> PathBuf {
        self.dir.join("container.json")
    }

    /// Writes the record atomically.
    pub fn save(&self) -> Result<(), ContainerError> {
        let p = self.record_path();
        let tmp = self.dir.join(".container.json.tmp");
        let text =
            serde_json::to_vec_pretty(&self.record).map_err(|e| io("writing", &tmp)(e.into()))?;
        fs::write(&tmp, text).map_err(io("writing", &tmp))?;
        fs::rename(&tmp, &p).map_err(io("writing", &p))
    }

    /// Reads the record again (`None`: the container was removed meanwhile).
    pub fn reload(&self) -> Result<Option<Container>, ContainerError> {
        load(&self.dir)
    }

    /// Takes this container's lock (`None`: the container was removed meanwhile).
    pub fn lock(&self, timeout: Duration) -> Result<Option<Lock>, ContainerError> {
        match Lock::take(&self.dir.join("lock"), timeout, false) {
            Ok(l) => Ok(Some(l)),
            Err(ContainerError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

fn load(dir: &Path) -> Result<Option<Container>, ContainerError> {
    let p = dir.join("container.json");
    let text = match fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", &p)(e)),
    };
    let record = serde_json::from_slice(&text).map_err(|source| ContainerError::Corrupt {
        path: p.clone(),
        source,
    })?;
    Ok(Some(Container {
        dir: dir.to_path_buf(),
        record,
    }))
}

/// An exclusive `flock`, released on drop.
pub struct Lock {
    _file: fs::File,
}

impl Lock {
    fn take(path: &Path, timeout: Duration, create: bool) -> Result<Lock, ContainerError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(io("opening", path))?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            // SAFETY: flock on an fd we own.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(Lock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io("locking", path)(e));
            }
            if Instant::now() >= deadline {
                return Err(ContainerError::LockTimeout(timeout, path.to_path_buf()));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// How long a command waits for a lock another hull command holds.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The containers under `<root>/containers`.
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("containers"),
        }
    }

    /// All containers, newest first.
    pub fn list(&self) -> Result<Vec<Container>, ContainerError> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("reading", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Some(c) = load(&e.path())? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| {
            b.record
                .created
                .cmp(&a.record.created)
                .then_with(|| a.record.id.cmp(&b.record.id))
        });
        Ok(out)
    }

    /// The container named by `query`: full id, name, or unique id prefix (docker's order).
    pub fn find(&self, query: &str) -> Result<Container, ContainerError> {
        let all = self.list()?;
        find_in(all, query)
    }

    /// Creates the directory and record of a new container, its name checked against the
    /// others' under the store's lock. `record.name` empty: a generated name.
    pub fn create(&self, mut record: Record) -> Result<Container, ContainerError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io("creating", &self.dir))?;
        let _lock = Lock::take(&self.dir.join(".lock"), LOCK_TIMEOUT, true)?;
        let all = self.list()?;
        if record.name.is_empty() {
            // Finitely many containers: some index gives a free name.
            record.name = (0..)
                .map(|i| generate_name(&record.id, i))
                .find(|n| !all.iter().any(|c| &c.record.name == n))
                .unwrap_or_else(|| record.id.clone());
        } else if let Some(c) = all.iter().find(|c| c.record.name == record.name) {
            return Err(ContainerError::NameInUse {
                name: record.name.clone(),
                id: c.record.short_id().to_string(),
            });
        }
        let dir = self.dir.join(&record.id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io("creating", &dir))?;
        let c = Container { dir, record };
        for d in [c.bundle(), c.rootfs(), c.upper(), c.work()] {
            fs::create_dir_all(&d).map_err(io("creating", &d))?;
        }
        fs::write(c.dir.join("lock"), b"").map_err(io("creating", &c.dir))?;
        c.save()?;
        Ok(c)
    }
}

fn find_in(all: Vec<Container>, query: &str) -> Result<Container, ContainerError> {
    if query.is_empty() {
        return Err(ContainerError::NotFound(query.to_string()));
    }
    let query_name = query.strip_prefix('/').unwrap_or(query);
    if let Some(c) = all
        .iter()
        .find(|c| c.record.id == query || c.record.name == query_name)
    {
        return Ok(c.clone());
    }
    let matches: Vec<&Container> = all
        .iter()
        .filter(|c| c.record.id.starts_with(query))
        .collect();
    match matches.as_slice() {
        [] => Err(ContainerError::NotFound(query.to_string())),
        [one] => Ok((*one).clone()),
        many => Err(ContainerError::Ambiguous {
            query: query.to_string(),
            ids: many
                .iter()
                .map(|c| c.record.short_id().to_string())
                .collect(),
        }),
    }
}

/// A new container id: 64 random hex digits.
pub fn new_id() -> Result<String, ContainerError> {
    let mut b = [0u8; 32];
    let p = Path::new("/dev/urandom");
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("reading", p))?;
    let mut s = String::with_capacity(64);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    Ok(s)
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "fervent", "gallant", "happy", "jolly", "keen", "lucid",
    "mellow", "nimble", "quiet", "sharp", "steady", "sturdy", "swift", "tender", "vivid", "witty",
];
const NAMES: &[&str] = &[
    "babbage", "curie", "darwin", "euler", "faraday", "gauss", "hopper", "hypatia", "kepler",
    "lamarr", "lovelace", "maxwell", "newton", "noether", "pascal", "ritchie", "shannon",
    "thompson", "turing", "wozniak",
];

/// docker-like `adjective_scientist` names, derived from the id (`attempt` > 0 adds a digit).
fn generate_name(id: &str, attempt: usize) -> String {
    let n = |i: usize| usize::from_str_radix(id.get(i..i + 4).unwrap_or("0"), 16).unwrap_or(i);
    let a = ADJECTIVES[(n(0) + attempt * 7) % ADJECTIVES.len()];
    let b = NAMES[(n(4) + attempt * 3) % NAMES.len()];
    if attempt < 8 {
        format!("{a}_{b}")
    } else {
        format!("{a}_{b}{attempt}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> Record {
        Record {
            id: id.into(),
            name: name.into(),
            created: hull_state::now_rfc3339(),
            ..Default::default()
        }
    }

    #[test]
    fn created_found_and_names_unique() {
        let d = tempfile::tempdir().unwrap();
        let cs = Containers::new(d.path());
        let a = cs.create(record(&"a".repeat(64), "web")).unwrap();
        assert!(a.rootfs().is_dir() && a.upper().is_dir() && a.work().is_dir());
        let b = cs
            .create(record(&format!("ab{}", "0".repeat(62)), ""))
            .unwrap();
        assert!(b.record.name.contains('_'), "{}", b.record.name);
        assert!(matches!(
            cs.create(record(&"c".repeat(64), "web")),
            Err(ContainerError::NameInUse { .. })
        ));
        assert_eq!(cs.find("web").unwrap().id(), a.id());
        assert_eq!(cs.find("/web").unwrap().id(), a.id());
        assert_eq!(cs.find("aaa").unwrap().id(), a.id());
        assert_eq!(cs.find(&b.record.name).unwrap().id(), b.id());
        assert!(matches!(
            cs.find("a"),
            Err(ContainerError::Ambiguous { .. })
        ));
        assert!(matches!(cs.find("zz"), Err(ContainerError::NotFound(_))));
        assert_eq!(cs.list().unwrap().len(), 2);
        let mut a2 = a.clone();
        a2.record.exit_code = Some(3);
        a2.save().unwrap();
        assert_eq!(a.reload().unwrap().unwrap().record.exit_code, Some(3));
        assert!(a.lock(Duration::from_secs(1)).unwrap().is_some());
    }

    #[test]
    fn ids_are_random_hex() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id().unwrap());
    }
}
