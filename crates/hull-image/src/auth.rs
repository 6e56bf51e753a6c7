//! Registry credentials in docker's `config.json` format (also podman's `auth.json`): the
//! `auths` map from registry to `{"auth": base64("user:password")}`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::IoContext;
use crate::reference::DOCKER_HUB;
use crate::ImageError;

/// The key docker writes for Docker Hub.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The auth file to use: `explicit`, else `$REGISTRY_AUTH_FILE`, else `~/.docker/config.json`.
pub fn auth_file_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The registry part of an `auths` key: `https://index.docker.io/v1/` → `docker.io`,
/// `http://127.0.0.1:5000/v2/` → `127.0.0.1:5000`, `quay.io/org` → `quay.io`.
fn registry_key(key: &str) -> String {
    let s = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// A user name and password.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.user)
    }
}

fn read_json(file: &Path) -> Result<Option<Map<String, Value>>, ImageError> {
    let data = match fs::read(file) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ImageError::io(
                format!("read auth file {}", file.display()),
                e,
            ))
        }
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice::<Value>(&data) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(ImageError::invalid(
            "auth file",
            file.display().to_string(),
            "not a JSON object",
        )),
        Err(e) => Err(ImageError::invalid(
            "auth file",
            file.display().to_string(),
            e,
        )),
    }
}

/// The credentials for `registry` (a domain such as `docker.io` or `127.0.0.1:5000`) in
/// `file`, if any. A missing file has none.
pub(crate) fn lookup(file: &Path, registry: &str) -> Result<Option<Credentials>, ImageError> {
    let Some(json) = read_json(file)? else {
        return Ok(None);
    };
    let Some(Value::Object(auths)) = json.get("auths") else {
        return Ok(None);
    };
    let want = registry_key(registry);
    let bad = |reason: String| ImageError::invalid("auth file", file.display().to_string(), reason);
    for (key, entry) in auths {
        if registry_key(key) != want {
            continue;
        }
        if let Some(encoded) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| bad(format!("auths[{key:?}].auth is not base64: {e}")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| bad(format!("auths[{key:?}].auth is not UTF-8")))?;
            let Some((user, password)) = decoded.split_once(':') else {
                return Err(bad(format!(
                    "auths[{key:?}].auth is not base64(user:password)"
                )));
            };
            return Ok(Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            }));
        }
        if let (Some(user), Some(password)) = (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            }));
        }
    }
    Ok(None)
}

/// Stores credentials for `registry` in the docker config file `auth_file` (its `auths` map,
/// `{"auth": base64("user:password")}`), keeping everything else in the file. The file is
/// replaced atomically and is private (0600); its directory is created if needed.
/// `registry` is a domain (`127.0.0.1:5000`, `quay.io`), a URL, or `docker.io`.
pub fn login(
    auth_file: &Path,
    registry: &str,
    user: &str,
    password: &str,
) -> Result<(), ImageError> {
    if user.contains(':') {
        return Err(ImageError::invalid("user name", user, "contains ':'"));
    }
    let key = registry_key(registry);
    if key.is_empty() {
        return Err(ImageError::invalid("registry", registry, "empty"));
    }
    let mut json = read_json(auth_file)?.unwrap_or_default();
    let auths = json
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Value::Object(auths) = auths {
        auths.retain(|k, _| registry_key(k) != key);
        let store_key = if key == DOCKER_HUB {
            DOCKER_HUB_KEY.to_string()
        } else {
            key
        };
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut entry = Map::new();
        entry.insert("auth".to_string(), Value::String(encoded));
        auths.insert(store_key, Value::Object(entry));
    }
    write_private(auth_file, &json)
}

/// Removes the credentials for `registry` from `auth_file`; false if there were none.
pub fn logout(auth_file: &Path, registry: &str) -> Result<bool, ImageError> {
    let key = registry_key(registry);
    let Some(mut json) = read_json(auth_file)? else {
        return Ok(false);
    };
    let Some(Value::Object(auths)) = json.get_mut("auths") else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| registry_key(k) != key);
    if auths.len() == before {
        return Ok(false);
    }
    write_private(auth_file, &json)?;
    Ok(true)
}

fn write_private(file: &Path, json: &Map<String, Value>) -> Result<(), ImageError> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .ctx("create directory", &dir)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".to_string());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut data = serde_json::to_vec_pretty(&Value::Object(json.clone()))
        .map_err(|e| ImageError::invalid("auth file", file.display().to_string(), e))?;
    data.push(b'\n');
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.ctx("write auth file", file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_choice() {
        // The only test of this binary that reads these variables.
        let explicit = Path::new("/x/config.json");
        assert_eq!(auth_file_path(Some(explicit)).unwrap(), explicit);
        std::env::set_var("REGISTRY_AUTH_FILE", "/from/env.json");
        assert_eq!(auth_file_path(None).unwrap(), Path::new("/from/env.json"));
        std::env::remove_var("REGISTRY_AUTH_FILE");
        let home = std::env::var_os("HOME");
        std::env::set_var("HOME", "/home/someone");
        let from_home = auth_file_path(None);
        match home {
            Some(h) => std::env::set_var("HOME", h),
            None => std::env::remove_var("HOME"),
        }
        assert_eq!(
            from_home.unwrap(),
            Path::new("/home/someone/.docker/config.json")
        );
    }

    #[test]
    fn keys_normalize() {
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("docker.io"), "docker.io");
        assert_eq!(registry_key("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(registry_key("quay.io/org"), "quay.io");
    }

    #[test]
    fn login_lookup_logout() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/config.json");
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(
            &f,
            r#"{"credsStore":"none","auths":{"other.io":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        login(&f, "127.0.0.1:5000", "alice", "s3cret:x").unwrap();
        login(&f, "docker.io", "bob", "pw").unwrap();
        let c = lookup(&f, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice", "s3cret:x")
        );
        let c = lookup(&f, "docker.io").unwrap().unwrap();
        assert_eq!(c.user, "bob");
        let c = lookup(&f, "other.io").unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("x", "y"));
        let json: Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
        assert_eq!(json["credsStore"], "none");
        assert!(json["auths"][DOCKER_HUB_KEY]["auth"].is_string());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(logout(&f, "127.0.0.1:5000").unwrap());
        assert!(lookup(&f, "127.0.0.1:5000").unwrap().is_none());
        assert!(!logout(&f, "127.0.0.1:5000").unwrap());
        assert!(lookup(&dir.path().join("missing.json"), "x")
            .unwrap()
            .is_none());
    }
}
