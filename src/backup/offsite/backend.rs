//! The store under the repository: a local directory through rustic_backend's local backend;
//! sftp and S3 through opendal (only those two services are built), adapted here to
//! rustic_core's backend traits with restic's layout (`config`, `keys/`, `snapshots/`,
//! `index/`, `data/xx/`).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use opendal::blocking::Operator;
use opendal::options::{ListOptions, ReadOptions};
use rustic_core::{
    ALL_FILE_TYPES, BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult,
    WriteBackend,
};

use super::{Access, Location, OffsiteError, S3_KEY_SECRETS};

pub(super) fn backend(access: &Access) -> Result<Arc<dyn WriteBackend>, OffsiteError> {
    let repository = access.location.to_string();
    let err = |reason: String| OffsiteError::Repository {
        repository: repository.clone(),
        what: "reaching its store".into(),
        reason,
    };
    // opendal's S3 speaks HTTP through the transport installed process-wide (reqwest, built
    // without auto-registration); installing it again is a no-op.
    opendal_http_transport_reqwest::install_default();
    let op = match &access.location {
        Location::Local(path) => {
            let be = rustic_backend::local::LocalBackend::new(
                path.to_string_lossy(),
                std::iter::empty::<(String, String)>(),
            )
            .map_err(|e| err(e.to_string()))?;
            return Ok(Arc::new(be));
        }
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => {
            let endpoint = match port {
                Some(p) => format!("ssh://{host}:{p}"),
                None => host.clone(),
            };
            let mut b = opendal::services::Sftp::default()
                .endpoint(&endpoint)
                .root(path)
                .known_hosts_strategy("strict");
            if let Some(u) = user {
                b = b.user(u);
            }
            if let Some(k) = &access.ssh_key {
                b = b.key(&k.to_string_lossy());
            }
            opendal::Operator::new(b)
        }
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => {
            let [id, secret] = S3_KEY_SECRETS;
            let b = opendal::services::S3::default()
                .endpoint(endpoint)
                .bucket(bucket)
                .root(&format!("/{prefix}"))
                .region(access.region.as_deref().unwrap_or("auto"))
                .access_key_id(access.key(id).unwrap_or_default())
                .secret_access_key(access.key(secret).unwrap_or_default())
                .disable_config_load()
                .disable_ec2_metadata();
            opendal::Operator::new(b)
        }
    }
    .map_err(|e| err(e.to_string()))?;
    let op = op.layer(
        opendal::layers::RetryLayer::new()
            .with_max_times(5)
            .with_jitter(),
    );
    // opendal's https client takes the process's TLS provider; ring is the one built in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _guard = runtime().enter();
    let operator = Operator::new(op).map_err(|e| err(e.to_string()))?;
    Ok(Arc::new(OpenDal {
        operator,
        location: access.location.to_string(),
    }))
}

/// opendal's blocking calls run on this runtime, whatever thread (rustic_core's own, or
/// rayon's) makes them.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mtp-offsite")
            .enable_all()
            .build()
            .expect("a tokio runtime for the backup repository")
    })
}

#[derive(Debug)]
struct OpenDal {
    operator: Operator,
    location: String,
}

fn failed(what: &str, path: &str, e: opendal::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, "{what} `{path}` failed", e)
        .attach_context("what", what.to_string())
        .attach_context("path", path.to_string())
}

impl OpenDal {
    fn path(tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => "config".into(),
            FileType::Pack => format!("data/{}/{}", &hex[..2], &hex[..]),
            _ => format!("{}/{}", tpe.dirname(), &hex[..]),
        }
    }
}

impl ReadBackend for OpenDal {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return match self.operator.stat("config") {
                Ok(m) => Ok(vec![(
                    Id::default(),
                    u32::try_from(m.content_length()).unwrap_or(u32::MAX),
                )]),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(failed("reading", "config", e)),
            };
        }
        let dir = format!("{}/", tpe.dirname());
        let opts = ListOptions {
            recursive: true,
            ..Default::default()
        };
        let lister = match self.operator.lister_options(&dir, opts) {
            Ok(l) => l,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(failed("listing", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in lister {
            let entry = entry.map_err(|e| failed("listing", &dir, e))?;
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            // Some stores list without sizes: ask for the file's own.
            let len = if meta.content_length() == 0 {
                self.operator
                    .stat(entry.path())
                    .map(|m| m.content_length())
                    .unwrap_or(0)
            } else {
                meta.content_length()
            };
            if let Some(id) = Id::parse_some(entry.name(), tpe) {
                out.push((id, u32::try_from(len).unwrap_or(u32::MAX)));
            }
        }
        Ok(out)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        Ok(self
            .operator
            .read(&path)
            .map_err(|e| failed("reading", &path, e))?
            .to_bytes())
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        let range = u64::from(offset)..u64::from(offset) + u64::from(length);
        let opts = ReadOptions {
            range: range.into(),
            ..Default::default()
        };
        Ok(self
            .operator
            .read_options(&path, opts)
            .map_err(|e| failed("reading", &path, e))?
            .to_bytes())
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        Self::path(tpe, id)
    }
}

impl WriteBackend for OpenDal {
    fn create(&self) -> RusticResult<()> {
        // An object store has no directories (restic makes none there either).
        if self.operator.info().scheme() == "s3" {
            return Ok(());
        }
        for tpe in ALL_FILE_TYPES {
            if tpe == FileType::Config {
                continue;
            }
            let dir = format!("{}/", tpe.dirname());
            self.operator
                .create_dir(&dir)
                .map_err(|e| failed("creating", &dir, e))?;
        }
        for i in 0u8..=255 {
            let dir = format!("data/{}/", hex::encode([i]));
            self.operator
                .create_dir(&dir)
                .map_err(|e| failed("creating", &dir, e))?;
        }
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        self.operator
            .write(&path, content.into_vec())
            .map_err(|e| failed("writing", &path, e))?;
        Ok(())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        self.operator
            .delete(&path)
            .map_err(|e| failed("deleting", &path, e))
    }
}
