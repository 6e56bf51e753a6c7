//! Image references with docker's normalization rules (`distribution/reference`):
//! `alpine` → `docker.io/library/alpine:latest`, `user/app` → `docker.io/user/app:latest`,
//! `localhost:5000/app@sha256:…` stays as it is.

use std::fmt;

use crate::ImageError;

/// Docker Hub's canonical domain.
pub(crate) const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalized reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImageRef {
    /// `docker.io`, `127.0.0.1:5000`, `quay.io`…
    pub domain: String,
    /// `library/alpine`, `user/app`…
    pub path: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// `sha256:…`
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
        let bad = |reason: &str| ImageError::InvalidReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        if reference.is_empty() {
            return Err(bad("empty reference"));
        }
        if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(
                "a 64-character hexadecimal string is an image id, not a name",
            ));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => {
                validate_digest_syntax(d).map_err(|r| bad(&r))?;
                (r, Some(d.to_string()))
            }
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(bad(&format!("invalid tag {t:?}")));
            }
        }
        if name.is_empty() {
            return Err(bad("empty repository name"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            domain
        };
        if !valid_domain(&domain) {
            return Err(bad(&format!("invalid registry domain {domain:?}")));
        }
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.to_lowercase() != path {
            return Err(bad("repository name must be lowercase"));
        }
        for comp in path.split('/') {
            if !valid_path_component(comp) {
                return Err(bad(&format!("invalid repository path component {comp:?}")));
            }
        }
        if domain.len() + 1 + path.len() > 255 {
            return Err(bad("repository name longer than 255 characters"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(ImageRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `domain/path:tag`, if there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.repository()))
    }

    /// `domain/path@digest`, with the given digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repository())
    }

    /// The registry host to talk to (Docker Hub's API host for `docker.io`).
    pub fn registry_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            "index.docker.io"
        } else {
            &self.domain
        }
    }

    pub fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                self.domain.clone(),
                self.path.clone(),
                t.clone(),
                d.clone(),
            ),
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.domain.clone(),
                self.path.clone(),
                d.clone(),
            ),
            (t, None) => oci_client::Reference::with_tag(
                self.domain.clone(),
                self.path.clone(),
                t.clone().unwrap_or_else(|| "latest".to_string()),
            ),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Normalizes `reference` with docker's rules: `alpine` → `docker.io/library/alpine:latest`,
/// `127.0.0.1:5000/app` → `127.0.0.1:5000/app:latest`, `app@sha256:…` →
/// `docker.io/library/app@sha256:…` (no tag added when a digest is given).
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    Ok(ImageRef::parse(reference)?.to_string())
}

fn validate_digest_syntax(d: &str) -> Result<(), String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("invalid digest {d:?}"));
    };
    match alg {
        "sha256"
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        "sha256" => Err(format!("invalid sha256 digest {d:?}")),
        other => Err(format!(
            "unsupported digest algorithm {other:?} (only sha256)"
        )),
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_domain(d: &str) -> bool {
    let (host_ok, port) = if d.starts_with('[') {
        // [ipv6]:port
        let Some(end) = d.find(']') else {
            return false;
        };
        let inner = &d[1..end];
        let ok = !inner.is_empty() && inner.bytes().all(|c| c.is_ascii_hexdigit() || c == b':');
        let rest = &d[end + 1..];
        if rest.is_empty() {
            (ok, None)
        } else {
            match rest.strip_prefix(':') {
                Some(p) => (ok, Some(p)),
                None => return false,
            }
        }
    } else {
        let (h, p) = match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        };
        let ok = !h.is_empty()
            && h.split('.').all(|c| {
                let b = c.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
            });
        (ok, p)
    };
    host_ok
        && port.map_or(true, |p| {
            !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or "-"+
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalization() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.19", "docker.io/library/alpine:3.19"),
            ("user/app", "docker.io/user/app:latest"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/library/alpine:1", "docker.io/library/alpine:1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
            ("quay.io/org/img:v1.2-x_y", "quay.io/org/img:v1.2-x_y"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            (
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            (
                "busybox:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/busybox:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            ("a__b/c-d/e.f", "docker.io/a__b/c-d/e.f:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "Alpine",
            "docker.io/Library/alpine",
            "alpine:",
            "alpine:-x",
            "a/../b",
            "alpine@sha256:short",
            "alpine@md5:0123",
            "a//b",
            "-a",
            "a..b",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "host:port/x",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn registry_host_of_docker_hub() {
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!(r.registry_host(), "index.docker.io");
        assert_eq!(r.repository(), "docker.io/library/alpine");
        let r = ImageRef::parse("127.0.0.1:1/x").unwrap();
        assert_eq!(r.registry_host(), "127.0.0.1:1");
    }
}
