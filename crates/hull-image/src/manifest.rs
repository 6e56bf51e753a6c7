//! The JSON documents of an image: descriptors, manifests, indexes, and the parts of the
//! config the store needs (platform, created, diff ids).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::platform::Platform;
use crate::ImageError;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(crate) const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub(crate) const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type a pull accepts.
pub(crate) const ACCEPTED_MANIFESTS: &[&str] =
    &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Annotation holding the tag (or full name) of an OCI layout entry.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the full image name (containerd, docker ≥ 25).
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DescPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl DescPlatform {
    pub fn to_platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescPlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug)]
pub(crate) struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest or an index.
pub(crate) enum Manifest {
    Index(Vec<Descriptor>),
    Image(ImageManifest),
}

/// Parses a manifest or index; `name` says whose in errors.
pub(crate) fn parse_manifest(bytes: &[u8], name: &str) -> Result<Manifest, ImageError> {
    let m: AnyManifest =
        serde_json::from_slice(bytes).map_err(|e| ImageError::invalid("manifest", name, e))?;
    if m.schema_version == Some(1) {
        return Err(ImageError::UnsupportedMediaType {
            name: name.to_string(),
            media_type: "application/vnd.docker.distribution.manifest.v1+json (schema 1)"
                .to_string(),
        });
    }
    let mt = m.media_type.unwrap_or_default();
    if let Some(manifests) = m.manifests {
        if !(mt.is_empty() || mt == OCI_INDEX || mt == DOCKER_LIST) {
            return Err(ImageError::UnsupportedMediaType {
                name: name.to_string(),
                media_type: mt,
            });
        }
        return Ok(Manifest::Index(manifests));
    }
    let (Some(config), Some(layers)) = (m.config, m.layers) else {
        return Err(ImageError::invalid(
            "manifest",
            name,
            "neither an image manifest nor an index",
        ));
    };
    if !(mt.is_empty() || mt == OCI_MANIFEST || mt == DOCKER_MANIFEST) {
        return Err(ImageError::UnsupportedMediaType {
            name: name.to_string(),
            media_type: mt,
        });
    }
    if !(config.media_type.is_empty()
        || config.media_type == OCI_CONFIG
        || config.media_type == DOCKER_CONFIG)
    {
        return Err(ImageError::UnsupportedMediaType {
            name: format!("{name} (not a container image: config)"),
            media_type: config.media_type,
        });
    }
    for l in &layers {
        let t = &l.media_type;
        let ok = t.is_empty()
            || t == OCI_LAYER_TAR
            || t == OCI_LAYER_GZIP
            || t == OCI_LAYER_ZSTD
            || t == DOCKER_LAYER_TAR
            || t == DOCKER_LAYER_GZIP
            || t.starts_with("application/vnd.oci.image.layer.nondistributable.v1.tar");
        if !ok {
            return Err(ImageError::UnsupportedMediaType {
                name: format!("{name} layer {}", l.digest),
                media_type: t.clone(),
            });
        }
    }
    Ok(Manifest::Image(ImageManifest { config, layers }))
}

/// Parses an image manifest (not an index).
pub(crate) fn parse_image_manifest(bytes: &[u8], name: &str) -> Result<ImageManifest, ImageError> {
    match parse_manifest(bytes, name)? {
        Manifest::Image(m) => Ok(m),
        Manifest::Index(_) => Err(ImageError::invalid(
            "manifest",
            name,
            "an index where an image manifest was expected",
        )),
    }
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// What the store reads from an image config.
#[derive(Deserialize)]
pub(crate) struct ConfigSummary {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    rootfs: RootFs,
}

impl ConfigSummary {
    pub fn parse(bytes: &[u8], name: &str) -> Result<ConfigSummary, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::invalid("image config", name, e))
    }

    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }

    pub fn diff_ids(&self) -> &[String] {
        &self.rootfs.diff_ids
    }
}

/// Chooses the index entry for `want`: a matching platform, the architecture's default
/// variant first; attestation entries (`unknown/unknown`) never match.
pub(crate) fn select_platform<'a>(
    entries: &'a [Descriptor],
    want: &Platform,
) -> Option<&'a Descriptor> {
    let mut best: Option<(&Descriptor, u32)> = None;
    for d in entries {
        let Some(p) = &d.platform else { continue };
        let p = p.to_platform();
        if want.matches(&p) {
            let score = want.score(&p);
            if best.map_or(true, |(_, b)| score > b) {
                best = Some((d, score));
            }
        }
    }
    best.map(|(d, _)| d)
}

/// The entry to take when no platform was asked for and none is the host's: the first Linux
/// image (hull runs a foreign architecture emulated in its VM), attestations skipped.
pub(crate) fn select_foreign(entries: &[Descriptor]) -> Option<&Descriptor> {
    entries.iter().find(|d| {
        d.platform
            .as_ref()
            .map(|p| p.to_platform())
            .is_some_and(|p| p.os == "linux" && p.architecture != "unknown")
    })
}

/// `os/arch[/variant]` of every entry, for error messages.
pub(crate) fn platforms_of(entries: &[Descriptor]) -> String {
    let v: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_platform().to_string()))
        .filter(|p| p != "unknown/unknown")
        .collect();
    if v.is_empty() {
        "no platforms".to_string()
    } else {
        v.join(", ")
    }
}
