//! Archives in transit through the machine running mtp (moves, backups, restores): spooled
//! to a temporary file only encrypted, to a key that lives in this process's memory and dies
//! with it, and streamed back out of it into an engine's archive API.

use std::io::{Read, Write};
use std::sync::Arc;

use super::{Engine, EngineError};

/// A spool file for an archive in transit, encrypted to a key held only in memory.
pub struct Spool {
    file: tempfile::NamedTempFile,
    key: age::x25519::Identity,
}

/// The writer [`Spool::writer`] hands out.
pub type SpoolWriter = age::stream::StreamWriter<std::io::BufWriter<std::fs::File>>;

impl Spool {
    pub fn new() -> std::io::Result<Spool> {
        Ok(Spool {
            file: tempfile::NamedTempFile::new()?,
            key: age::x25519::Identity::generate(),
        })
    }

    /// A writer that encrypts into the spool; [`Spool::finish`] it when done.
    pub fn writer(&self) -> Result<SpoolWriter, String> {
        let file = self.file.reopen().map_err(|e| e.to_string())?;
        let recipient = self.key.to_public();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| e.to_string())?;
        enc.wrap_output(std::io::BufWriter::new(file))
            .map_err(|e| e.to_string())
    }

    /// Writes the encryption's last chunk and flushes the file.
    pub fn finish(w: SpoolWriter) -> Result<(), String> {
        w.finish()
            .and_then(|mut f| f.flush())
            .map_err(|e| e.to_string())
    }

    /// Reads the archive of `path` in container `id` into a fresh spool; returns it with the
    /// archive's size.
    pub async fn fill<E: Engine>(
        engine: &E,
        id: &str,
        path: &str,
    ) -> Result<(Arc<Spool>, u64), EngineError> {
        let other = |e: String| EngineError::Other(format!("spooling {path}: {e}"));
        let spool = Arc::new(Spool::new().map_err(|e| other(e.to_string()))?);
        let mut w = spool.writer().map_err(other)?;
        let size = engine.download_archive(id, path, &mut w).await?;
        blocking(move || Spool::finish(w))
            .await
            .map_err(other)?
            .map_err(other)?;
        Ok((spool, size))
    }

    /// A reader of the decrypted archive.
    pub fn reader(&self) -> Result<impl Read + Send + use<>, String> {
        let file = self.file.reopen().map_err(|e| e.to_string())?;
        let dec = age::Decryptor::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
        dec.decrypt(std::iter::once(&self.key as &dyn age::Identity))
            .map_err(|e| e.to_string())
    }

    /// A reader of `len` bytes of the decrypted archive from `offset` on (one entry's data,
    /// read without decrypting what comes before it).
    pub fn reader_at(&self, offset: u64, len: u64) -> Result<impl Read + Send + use<>, String> {
        use std::io::{Seek, SeekFrom};
        let file = self.file.reopen().map_err(|e| e.to_string())?;
        let dec = age::Decryptor::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
        let mut r = dec
            .decrypt(std::iter::once(&self.key as &dyn age::Identity))
            .map_err(|e| e.to_string())?;
        r.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
        Ok(r.take(len))
    }

    /// Extracts the spooled archive into `path` of container `id` (decrypted in a blocking
    /// thread and streamed, never whole in memory).
    pub async fn upload<E: Engine>(
        self: &Arc<Self>,
        engine: &E,
        id: &str,
        path: &str,
    ) -> Result<(), EngineError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
        let s = self.clone();
        let feeder = tokio::task::spawn_blocking(move || {
            let mut r = match s.reader() {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e)));
                    return;
                }
            };
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx
                            .blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let result = engine.upload_archive(id, path, body).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), feeder).await;
        result
    }
}

/// Runs `f` off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("internal error: {e}"))
}
