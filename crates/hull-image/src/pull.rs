//! Pulling from OCI / Docker v2 registries with `oci-client`.
//!
//! The manifest (and the index, if any) is fetched and verified against its digest, the
//! platform is chosen, then the config and the layers are downloaded (up to
//! [`PARALLEL_DOWNLOADS`] at once), each hashed while it is written to `tmp/<hex>.partial` and
//! renamed into `blobs/` only when its size and digest are right. A blob whose content is
//! wrong is deleted and fetched once more from scratch; a download cut short is resumed from
//! where it stopped (HTTP range request), in this pull or the next. Each blob download holds
//! `locks/blob-<hex>` so two pulls of one image never write the same file.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use crate::auth::{self, Credentials};
use crate::digest::{hex_of, sha256_of, Hasher};
use crate::error::chain;
use crate::lock::FileLock;
use crate::manifest::{
    parse_image_manifest, parse_manifest, platforms_of, select_foreign, select_platform,
    ConfigSummary, Descriptor, Manifest, ACCEPTED_MANIFESTS,
};
use crate::platform::Platform;
use crate::progress::{human, BlobProgress, Progress, Reporter};
use crate::reference::ImageRef;
use crate::store::{ImageRecord, Store};
use crate::ImageError;

/// Layer downloads running at once.
pub const PARALLEL_DOWNLOADS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence of a registry in the middle of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries per blob (a cut download resumes; wrong content starts over, once).
const BLOB_ATTEMPTS: usize = 3;
/// Largest manifest accepted (registries limit them to 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;

/// Options of [`Store::pull`].
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// The platform to pull from an index (default: the host's, `linux/amd64` on x86_64).
    /// When given, a single-platform image of another platform is refused too.
    pub platform: Option<Platform>,
    /// Registries (`host` or `host:port`) reached over plain HTTP. Loopback registries
    /// (127.0.0.0/8, `localhost`, `[::1]`) always are.
    pub insecure_registries: Vec<String>,
    /// Docker config file with credentials; else `$REGISTRY_AUTH_FILE`, else
    /// `~/.docker/config.json`.
    pub auth_file: Option<PathBuf>,
    /// Progress on stderr.
    pub progress: Progress,
}

/// True for registries on this machine, which are reached over plain HTTP.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host` of `host:port`, `[v6]:port`, `http://host:port/`.
fn host_of(registry: &str) -> &str {
    let r = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let r = r.split('/').next().unwrap_or(r);
    if let Some(rest) = r.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    r.split(':').next().unwrap_or(r)
}

fn plain_http(registry: &str, insecure: &[String]) -> bool {
    if is_loopback(registry) {
        return true;
    }
    insecure.iter().any(|i| {
        let i = i
            .strip_prefix("https://")
            .or_else(|| i.strip_prefix("http://"))
            .unwrap_or(i)
            .trim_end_matches('/');
        let has_port = if i.starts_with('[') {
            i.contains("]:")
        } else {
            i.contains(':')
        };
        i == registry || (!has_port && host_of(i) == host_of(registry))
    })
}

struct Pull<'a> {
    store: &'a Store,
    client: Client,
    auth: RegistryAuth,
    r: ImageRef,
    /// `registry/repository` for messages.
    origin: String,
    auth_file: Option<PathBuf>,
    has_credentials: bool,
    reporter: Reporter,
}

/// Pulls `reference` into `store`.
pub(crate) fn pull(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
) -> Result<ImageRecord, ImageError> {
    let r = ImageRef::parse(reference)?;
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    let auth_file = auth::auth_file_path(opts.auth_file.as_deref());
    let creds: Option<Credentials> = match &auth_file {
        Some(p) => auth::lookup(p, &r.domain)?,
        None => None,
    };
    let registry_host = r.registry_host().to_string();
    let client = make_client(&registry_host, &opts.insecure_registries).map_err(|message| {
        ImageError::Registry {
            registry: r.domain.clone(),
            message,
        }
    })?;
    let auth = match &creds {
        Some(c) => RegistryAuth::Basic(c.user.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    };
    let _gc = store.gc_shared()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::io("start the network runtime", e))?;
    let p = Pull {
        store,
        client,
        auth,
        origin: r.repository(),
        r,
        auth_file,
        has_credentials: creds.is_some(),
        reporter: Reporter::new(opts.progress),
    };
    p.reporter.line(&format!("Pulling {}", p.r));
    let (manifest_digest, top_digest) =
        runtime.block_on(p.download(&want, opts.platform.is_some()))?;
    drop(runtime);
    let names = match (&p.r.tag, &p.r.digest) {
        (Some(_), None) => p.r.tagged().into_iter().collect(),
        _ => Vec::new(),
    };
    let repo_digests = vec![p.r.with_digest(&top_digest)];
    let record = store.finish_image(&manifest_digest, names, repo_digests, &p.reporter)?;
    p.reporter.line(&format!("Digest: {top_digest}"));
    p.reporter
        .line(&format!("Status: Downloaded {} ({})", p.r, record.id));
    Ok(record)
}

/// Checks `user`/`password` against `registry` (a domain such as `127.0.0.1:5000`, or
/// `docker.io`), as `docker login` does before it stores them: the registry's `/v2/`
/// endpoint with HTTP basic auth, or its token service for bearer-token registries.
/// A registry that asks for no authentication accepts anything.
pub fn verify_login(
    registry: &str,
    user: &str,
    password: &str,
    insecure_registries: &[String],
) -> Result<(), ImageError> {
    let r = ImageRef::parse(&format!("{registry}/x"))?;
    let host = r.registry_host().to_string();
    let scheme = if plain_http(&host, insecure_registries) {
        "http"
    } else {
        "https"
    };
    let fail = |message: String| ImageError::Registry {
        registry: r.domain.clone(),
        message,
    };
    let rejected = |message: &str| ImageError::Unauthorized {
        registry: r.domain.clone(),
        reference: format!("{} (login)", r.domain),
        message: format!("{message} for user {user}"),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(READ_TIMEOUT)
        .user_agent(concat!("hull/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fail(chain(&e)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::io("start the network runtime", e))?;
    let url = format!("{scheme}://{host}/v2/");
    runtime.block_on(async {
        let resp = client.get(&url).send().await.map_err(|e| fail(chain(&e)))?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Err(fail(format!("GET {url}: HTTP {}", resp.status())));
        }
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (scheme_name, params) = challenge
            .split_once(' ')
            .unwrap_or((challenge.as_str(), ""));
        let check = if scheme_name.eq_ignore_ascii_case("bearer") {
            let params = challenge_params(params);
            let realm = params
                .iter()
                .find(|(k, _)| k == "realm")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| fail(format!("bearer challenge without realm: {challenge}")))?;
            let mut query: Vec<(&str, &str)> = vec![("account", user)];
            if let Some((_, s)) = params.iter().find(|(k, _)| k == "service") {
                query.push(("service", s));
            }
            client.get(&realm).query(&query)
        } else {
            client.get(&url)
        };
        let resp = check
            .basic_auth(user, Some(password))
            .send()
            .await
            .map_err(|e| fail(chain(&e)))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                Err(rejected("credentials rejected"))
            }
            s => Err(fail(format!("login: HTTP {s}"))),
        }
    })
}

/// `realm="…",service="…"` → pairs.
fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_string()));
        rest = next.trim_start_matches([',', ' ']);
    }
    out
}

fn make_client(registry_host: &str, insecure: &[String]) -> Result<Client, String> {
    // reqwest is built without a bundled crypto provider: use ring (ignored if the process
    // already installed one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if plain_http(registry_host, insecure) {
        ClientProtocol::HttpsExcept(vec![registry_host.to_string()])
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        platform_resolver: None,
        user_agent: concat!("hull/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    Client::try_from(config).map_err(|e| chain(&e))
}

/// How one blob download attempt failed.
enum Failure {
    /// The content is wrong: discard it, start over.
    Corrupt(ImageError),
    /// The transfer broke: keep what we have, resume.
    Transient(ImageError),
    /// Retrying will not help.
    Fatal(ImageError),
}

impl Pull<'_> {
    fn registry(&self) -> String {
        self.r.domain.clone()
    }

    fn map_err(&self, e: OciDistributionError) -> ImageError {
        let registry = self.registry();
        let reference = self.r.to_string();
        let unauthorized = || {
            let file = self
                .auth_file
                .as_ref()
                .map_or_else(|| "no auth file".to_string(), |p| p.display().to_string());
            let message = if self.has_credentials {
                format!("the credentials for {registry} in {file} were rejected")
            } else {
                format!("authentication required and no credentials for {registry} in {file} (log in first)")
            };
            ImageError::Unauthorized {
                registry: registry.clone(),
                reference: reference.clone(),
                message,
            }
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
            OciDistributionError::RegistryError { ref envelope, .. }
                if envelope.errors.iter().any(|x| {
                    matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)
                }) =>
            {
                unauthorized()
            }
            OciDistributionError::RegistryError { ref envelope, .. }
                if envelope.errors.iter().any(|x| {
                    matches!(
                        x.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) =>
            {
                ImageError::ManifestNotFound {
                    reference,
                    message: format!("registry {registry}: {}", chain(&e)),
                }
            }
            OciDistributionError::ImageManifestNotFoundError(_)
            | OciDistributionError::ServerError { code: 404, .. } => ImageError::ManifestNotFound {
                reference,
                message: format!("registry {registry}: {}", chain(&e)),
            },
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => ImageError::DigestMismatch {
                digest: expected,
                actual,
                origin: format!("registry {}", self.origin),
            },
            other => ImageError::Registry {
                registry,
                message: chain(&other),
            },
        }
    }

    /// Fetches the manifest (choosing the platform in an index) and every blob. Returns the
    /// image manifest's digest and the digest the reference resolved to (index or manifest).
    async fn download(
        &self,
        want: &Platform,
        explicit: bool,
    ) -> Result<(String, String), ImageError> {
        let top = self.r.to_oci();
        let (top_bytes, top_digest) = self.fetch_manifest(&top, self.r.digest.as_deref()).await?;
        let name = self.r.to_string();
        let (bytes, digest) = match parse_manifest(&top_bytes, &name)? {
            Manifest::Index(entries) => {
                // No host image in the index and no platform asked for: a foreign one (hull
                // runs it emulated; `hull run` says so).
                let fallback = || select_foreign(&entries).filter(|_| !explicit);
                let entry = select_platform(&entries, want)
                    .or_else(fallback)
                    .ok_or_else(|| ImageError::NoMatchingPlatform {
                        reference: name.clone(),
                        platform: want.to_string(),
                        available: platforms_of(&entries),
                    })?;
                hex_of(&entry.digest)?;
                let child = oci_client::Reference::with_digest(
                    self.r.domain.clone(),
                    self.r.path.clone(),
                    entry.digest.clone(),
                );
                self.fetch_manifest(&child, Some(&entry.digest)).await?
            }
            Manifest::Image(_) => (top_bytes, top_digest.clone()),
        };
        let manifest = parse_image_manifest(&bytes, &format!("{name} ({digest})"))?;

        let config_progress =
            Reporter::new(Progress::Quiet).blob(&manifest.config.digest, manifest.config.size);
        self.fetch_blob(&manifest.config, &config_progress).await?;
        let config = ConfigSummary::parse(
            &self.store.read_blob(&manifest.config.digest)?,
            &manifest.config.digest,
        )?;
        let actual = config.platform();
        if explicit && !want.matches(&actual) {
            return Err(ImageError::NoMatchingPlatform {
                reference: name,
                platform: want.to_string(),
                available: actual.to_string(),
            });
        }
        if config.diff_ids().len() != manifest.layers.len() {
            return Err(ImageError::invalid(
                "image",
                name,
                format!(
                    "the manifest has {} layers but the config {} diff ids",
                    manifest.layers.len(),
                    config.diff_ids().len()
                ),
            ));
        }

        let mut unique: Vec<&Descriptor> = Vec::new();
        for l in &manifest.layers {
            hex_of(&l.digest)?;
            if !unique.iter().any(|u| u.digest == l.digest) {
                unique.push(l);
            }
        }
        // Every download runs to its end even when another fails: what was verified is kept
        // for the next pull.
        let results: Vec<Result<(), ImageError>> =
            futures_util::stream::iter(unique.into_iter().map(|l| async move {
                let progress = self.reporter.blob(&l.digest, l.size);
                self.fetch_blob(l, &progress).await
            }))
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .collect()
            .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }

        self.store
            .put_blob_bytes(&bytes, Some(&digest), &format!("registry {}", self.origin))?;
        Ok((digest, top_digest))
    }

    async fn fetch_manifest(
        &self,
        reference: &oci_client::Reference,
        expected: Option<&str>,
    ) -> Result<(Vec<u8>, String), ImageError> {
        let (body, _) = self
            .client
            .pull_manifest_raw(reference, &self.auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| self.map_err(e))?;
        if body.len() > MAX_MANIFEST {
            return Err(ImageError::invalid(
                "manifest",
                reference.whole(),
                format!("larger than {MAX_MANIFEST} bytes"),
            ));
        }
        let digest = sha256_of(&body);
        if let Some(exp) = expected {
            if exp != digest {
                return Err(ImageError::DigestMismatch {
                    digest: exp.to_string(),
                    actual: digest,
                    origin: format!("registry {}", self.origin),
                });
            }
        }
        Ok((body.to_vec(), digest))
    }

    /// Makes `desc` a verified blob of the store.
    async fn fetch_blob(
        &self,
        desc: &Descriptor,
        progress: &BlobProgress,
    ) -> Result<(), ImageError> {
        let hex = hex_of(&desc.digest)?.to_string();
        if self.store.has_blob(&desc.digest) {
            progress.finish("Already exists");
            return Ok(());
        }
        let _lock = FileLock::exclusive_async(self.store.lock_path(&format!("blob-{hex}"))).await?;
        if self.store.has_blob(&desc.digest) {
            progress.finish("Already exists");
            return Ok(());
        }
        let partial = self.store.partial_path(&desc.digest)?;
        let mut corrupt_seen = false;
        let mut transient = false;
        let mut last: Option<ImageError> = None;
        for attempt in 0..BLOB_ATTEMPTS {
            if transient {
                // A broken transfer: give the network a moment (0.5 s, 1 s) before resuming.
                tokio::time::sleep(Duration::from_millis(500 * attempt as u64)).await;
            }
            match self.download_once(desc, &partial, progress).await {
                Ok(()) => {
                    self.store.commit_blob(&partial, &desc.digest)?;
                    progress.finish("Download complete");
                    return Ok(());
                }
                Err(Failure::Corrupt(e)) => {
                    let _ = fs::remove_file(&partial);
                    if corrupt_seen {
                        progress.finish("Failed");
                        return Err(e);
                    }
                    corrupt_seen = true;
                    transient = false;
                    progress.status("Bad content, again");
                    last = Some(e);
                }
                Err(Failure::Transient(e)) => {
                    transient = true;
                    progress.status("Retrying");
                    last = Some(e);
                }
                Err(Failure::Fatal(e)) => {
                    progress.finish("Failed");
                    return Err(e);
                }
            }
        }
        progress.finish("Failed");
        Err(last.unwrap_or_else(|| ImageError::Registry {
            registry: self.registry(),
            message: format!("could not fetch blob {}", desc.digest),
        }))
    }

    /// One attempt: resumes `partial` if it holds a prefix, streams the rest, verifies.
    async fn download_once(
        &self,
        desc: &Descriptor,
        partial: &std::path::Path,
        progress: &BlobProgress,
    ) -> Result<(), Failure> {
        let fatal_io = |what: &str, e: std::io::Error| {
            Failure::Fatal(ImageError::io(format!("{what} {}", partial.display()), e))
        };
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(partial)
            .map_err(|e| fatal_io("open", e))?;
        let mut hasher = Hasher::new();
        let mut have = file.metadata().map_err(|e| fatal_io("stat", e))?.len();
        if have > desc.size {
            file.set_len(0).map_err(|e| fatal_io("truncate", e))?;
            have = 0;
        }
        if have > 0 {
            // Re-hash what an earlier attempt kept.
            let mut buf = vec![0u8; 256 * 1024];
            file.seek(SeekFrom::Start(0))
                .map_err(|e| fatal_io("seek", e))?;
            let mut left = have;
            while left > 0 {
                let n = file.read(&mut buf).map_err(|e| fatal_io("read", e))?;
                if n == 0 {
                    break;
                }
                let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            if hasher.count != have {
                return Err(Failure::Corrupt(ImageError::io(
                    format!("re-read {}", partial.display()),
                    std::io::Error::other("file shrank"),
                )));
            }
        }
        let origin = format!("registry {}", self.origin);
        if have < desc.size || desc.size == 0 {
            let oref = self.r.to_oci();
            let digest: &str = &desc.digest;
            let stream = if have > 0 {
                progress.status(&format!("Resuming at {have}"));
                match self
                    .client
                    .pull_blob_stream_partial(&oref, &digest, have, None)
                    .await
                {
                    Ok(BlobResponse::Partial(s)) => s,
                    Ok(BlobResponse::Full(s)) => {
                        // The registry ignored the range: start over.
                        file.set_len(0).map_err(|e| fatal_io("truncate", e))?;
                        hasher = Hasher::new();
                        s
                    }
                    // The kept prefix does not fit the blob (416): discard it.
                    Err(OciDistributionError::ServerError { code: 416, .. }) => {
                        return Err(Failure::Corrupt(ImageError::Registry {
                            registry: self.registry(),
                            message: format!("blob {digest}: the partial download does not fit"),
                        }))
                    }
                    Err(e) => return Err(self.classify(e, digest)),
                }
            } else {
                progress.status(&format!("Downloading {}", human(desc.size)));
                file.set_len(0).map_err(|e| fatal_io("truncate", e))?;
                hasher = Hasher::new();
                self.client
                    .pull_blob_stream(&oref, &digest)
                    .await
                    .map_err(|e| self.classify(e, digest))?
            };
            file.seek(SeekFrom::End(0))
                .map_err(|e| fatal_io("seek", e))?;
            let mut stream = stream.stream;
            loop {
                match stream.next().await {
                    None => break,
                    Some(Ok(chunk)) => {
                        if hasher.count + chunk.len() as u64 > desc.size {
                            return Err(Failure::Corrupt(ImageError::SizeMismatch {
                                digest: desc.digest.clone(),
                                expected: desc.size,
                                actual: hasher.count + chunk.len() as u64,
                                origin,
                            }));
                        }
                        file.write_all(&chunk).map_err(|e| fatal_io("write", e))?;
                        hasher.update(&chunk);
                        progress.position(hasher.count);
                    }
                    Some(Err(e)) => {
                        // oci-client's own verification reports a bad digest at the end of
                        // the stream: let ours below judge complete content.
                        if hasher.count == desc.size {
                            break;
                        }
                        file.flush().map_err(|e| fatal_io("write", e))?;
                        return Err(Failure::Transient(ImageError::Registry {
                            registry: self.registry(),
                            message: format!("downloading blob {}: {}", desc.digest, chain(&e)),
                        }));
                    }
                }
            }
        }
        file.sync_all().map_err(|e| fatal_io("sync", e))?;
        if hasher.count != desc.size {
            return Err(Failure::Corrupt(ImageError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: hasher.count,
                origin,
            }));
        }
        let actual = hasher.finish();
        if actual != desc.digest {
            return Err(Failure::Corrupt(ImageError::DigestMismatch {
                digest: desc.digest.clone(),
                actual,
                origin,
            }));
        }
        Ok(())
    }

    /// Sorts an error of a blob request: worth retrying or not.
    fn classify(&self, e: OciDistributionError, digest: &str) -> Failure {
        let transient = matches!(
            &e,
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_)
        ) || matches!(&e, OciDistributionError::ServerError { code, .. } if *code >= 500);
        let unknown = matches!(&e, OciDistributionError::ServerError { code: 404, .. })
            || matches!(&e, OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|x| x.code == OciErrorCode::BlobUnknown));
        if unknown {
            return Failure::Fatal(ImageError::Registry {
                registry: self.registry(),
                message: format!(
                    "blob {digest} of {} is unknown to the registry",
                    self.origin
                ),
            });
        }
        let e = match self.map_err(e) {
            ImageError::Registry { registry, message } => ImageError::Registry {
                registry,
                message: format!("downloading blob {digest}: {message}"),
            },
            other => other,
        };
        if transient {
            Failure::Transient(e)
        } else {
            Failure::Fatal(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_params() {
        let p = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope=x"#,
        );
        assert_eq!(
            p,
            vec![
                (
                    "realm".to_string(),
                    "https://auth.docker.io/token".to_string()
                ),
                ("service".to_string(), "registry.docker.io".to_string()),
                ("scope".to_string(), "x".to_string()),
            ]
        );
    }

    #[test]
    fn loopback_and_insecure() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("localhost:80"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("index.docker.io"));
        let insecure = vec![
            "reg.lan".to_string(),
            "other:5000".to_string(),
            "[fd00::1]".to_string(),
        ];
        assert!(plain_http("[fd00::1]:5000", &insecure));
        assert!(plain_http("reg.lan:5000", &insecure));
        assert!(plain_http("other:5000", &insecure));
        assert!(!plain_http("other:6000", &insecure));
        assert!(!plain_http("quay.io", &insecure));
    }
}
