//! Finding the executable through `PATH` and the user's home directory, with runc's messages.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Why a candidate file cannot be executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotExecutable {
    /// stat failed.
    Stat(Errno),
    /// A directory, or no execute bit.
    Permission,
}

/// Checks a candidate on the real file system: a non-directory with an execute bit.
pub fn check_executable(p: &Path) -> Result<(), NotExecutable> {
    let m = std::fs::metadata(p).map_err(|e| NotExecutable::Stat(crate::error::io_errno(&e)))?;
    if m.is_dir() || m.permissions().mode() & 0o111 == 0 {
        return Err(NotExecutable::Permission);
    }
    Ok(())
}

/// Resolves `name` like Go's `exec.LookPath` (what runc uses): a name with a `/` is taken as
/// is; otherwise each directory of `path_env` is tried (an empty element means `.`).
/// The error is runc's message.
pub fn look_path(
    name: &str,
    path_env: Option<&str>,
    check: impl Fn(&Path) -> Result<(), NotExecutable>,
) -> Result<PathBuf, String> {
    if name.contains('/') {
        return match check(Path::new(name)) {
            Ok(()) => Ok(name.into()),
            Err(NotExecutable::Stat(e)) => {
                Err(format!("exec: \"{name}\": stat {name}: {}", e.desc()))
            }
            Err(NotExecutable::Permission) => Err(format!("exec: \"{name}\": permission denied")),
        };
    }
    if !name.is_empty() {
        for dir in path_env.unwrap_or("").split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = Path::new(dir).join(name);
            if check(&candidate).is_ok() {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    ))
}

/// The value of `key` in a list of `KEY=value` strings (the last one wins, like getenv after
/// a series of putenv).
pub fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The home directory of `uid` in an /etc/passwd text.
pub fn passwd_home(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_fs(execs: &'static [&'static str]) -> impl Fn(&Path) -> Result<(), NotExecutable> {
        move |p: &Path| match p.to_str().unwrap() {
            s if execs.contains(&s) => Ok(()),
            "/etc" | "/usr/bin/dir" | "/bin/noexec" => Err(NotExecutable::Permission),
            _ => Err(NotExecutable::Stat(Errno::ENOENT)),
        }
    }

    #[test]
    fn resolves_through_path_in_order() {
        let fs = fake_fs(&["/bin/sh", "/usr/bin/sh", "/usr/local/bin/echo", "./rel"]);
        let path = Some("/usr/local/bin:/usr/bin:/bin");
        assert_eq!(
            look_path("sh", path, &fs).unwrap(),
            Path::new("/usr/bin/sh")
        );
        assert_eq!(
            look_path("echo", path, &fs).unwrap(),
            Path::new("/usr/local/bin/echo")
        );
        assert_eq!(
            look_path("rel", Some("/x::/y"), &fs).unwrap(),
            Path::new("./rel")
        );
    }

    #[test]
    fn skips_directories_and_non_executables() {
        let fs = fake_fs(&["/bin/dir"]);
        assert_eq!(
            look_path("dir", Some("/usr/bin:/bin"), &fs).unwrap(),
            Path::new("/bin/dir")
        );
        assert!(look_path("noexec", Some("/bin"), &fs).is_err());
    }

    #[test]
    fn errors_read_like_runc() {
        let fs = fake_fs(&["/bin/sh"]);
        assert_eq!(
            look_path("foo", Some("/bin"), &fs).unwrap_err(),
            "exec: \"foo\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path("sh", None, &fs).unwrap_err(),
            "exec: \"sh\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path("/nope", Some("/bin"), &fs).unwrap_err(),
            "exec: \"/nope\": stat /nope: No such file or directory"
        );
        assert_eq!(
            look_path("/etc", None, &fs).unwrap_err(),
            "exec: \"/etc\": permission denied"
        );
        assert_eq!(
            look_path("/bin/sh", None, &fs).unwrap(),
            Path::new("/bin/sh")
        );
    }

    #[test]
    fn env_lookup() {
        let env: Vec<String> = ["PATH=/bin", "HOME=/root", "PATH=/usr/bin", "PATHX=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(env_get(&env, "PATH"), Some("/usr/bin"));
        assert_eq!(env_get(&env, "HOME"), Some("/root"));
        assert_eq!(env_get(&env, "TERM"), None);
    }

    #[test]
    fn home_from_passwd() {
        let pw = "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534::/nonexistent:/bin/false\n";
        assert_eq!(passwd_home(pw, 0).as_deref(), Some("/root"));
        assert_eq!(passwd_home(pw, 65534).as_deref(), Some("/nonexistent"));
        assert_eq!(passwd_home(pw, 1000), None);
    }
}
