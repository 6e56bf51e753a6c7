//! Platforms (`os/arch[/variant]`) and how an image index entry is chosen for one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ImageError;

/// An OCI platform: `linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`…
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this host (`linux/amd64` on x86_64).
    pub fn host() -> Platform {
        let architecture = normalize_arch(std::env::consts::ARCH).0;
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture,
            variant: None,
        }
    }

    /// The variant, with the default one of the architecture filled in (`arm64` → `v8`,
    /// `arm` → `v7`), as containerd compares them.
    fn effective_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            (_, Some(v)) if !v.is_empty() => Some(v),
            ("arm64", _) => Some("v8"),
            ("arm", _) => Some("v7"),
            _ => None,
        }
    }

    /// True if an image made for `other` is what this platform asks for: same os and
    /// architecture, and the same variant if this one names one (an absent variant is the
    /// architecture's default: `linux/arm64` = `linux/arm64/v8`). Use it rather than `==`
    /// to compare a requested platform with [`crate::ImageRecord::platform`].
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match &self.variant {
            Some(v) if !v.is_empty() => other.effective_variant() == self.effective_variant(),
            _ => true,
        }
    }

    /// Preference among matching entries: the architecture's default variant first.
    pub(crate) fn score(&self, other: &Platform) -> u32 {
        u32::from(other.effective_variant() == self.effective_variant())
    }
}

/// Maps aliases (`x86_64`, `aarch64`, `armhf`…) to OCI names; returns (arch, implied variant).
fn normalize_arch(arch: &str) -> (String, Option<String>) {
    let (a, v) = match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64", None),
        "aarch64" | "arm64" => ("arm64", None),
        "armhf" | "armv7l" => ("arm", Some("v7")),
        "armel" | "armv6l" => ("arm", Some("v6")),
        "x86" | "i386" | "i686" | "386" => ("386", None),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        other => (other, None),
    };
    (a.to_string(), v.map(str::to_string))
}

impl FromStr for Platform {
    type Err = ImageError;

    /// `os/arch[/variant]`, e.g. `linux/arm64/v8`; architecture aliases are accepted
    /// (`linux/x86_64`, `linux/aarch64`).
    fn from_str(s: &str) -> Result<Platform, ImageError> {
        let bad = |reason: &str| ImageError::InvalidPlatform {
            platform: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad("expected os/arch[/variant]"));
        }
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        };
        if !parts.iter().all(|p| valid(p)) {
            return Err(bad("empty or invalid component"));
        }
        let os = parts[0].to_ascii_lowercase();
        let (architecture, implied) = normalize_arch(&parts[1].to_ascii_lowercase());
        let variant = parts.get(2).map(|v| v.to_ascii_lowercase()).or(implied);
        Ok(Platform {
            os,
            architecture,
            variant,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.architecture, "arm64");
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let p: Platform = "linux/x86_64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        let p: Platform = "linux/armhf".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn host_is_linux() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(h.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn variant_matching() {
        let want: Platform = "linux/arm64".parse().unwrap();
        let v8: Platform = "linux/arm64/v8".parse().unwrap();
        let none = Platform {
            variant: None,
            ..v8.clone()
        };
        assert!(want.matches(&v8) && want.matches(&none));
        assert!(v8.matches(&none), "arm64 without variant is v8");
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        let v6: Platform = "linux/arm/v6".parse().unwrap();
        assert!(!v7.matches(&v6));
        let arm: Platform = "linux/arm".parse().unwrap();
        assert!(arm.matches(&v6) && arm.score(&v7) > arm.score(&v6));
        let amd: Platform = "linux/amd64".parse().unwrap();
        assert!(!amd.matches(&v8));
    }
}
