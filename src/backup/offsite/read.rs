//! Reading a snapshot back for a restore: its tree is written out as the archive's tar
//! (`data/...`, `manifest.json`) into a pipe, read on the other end by the same verification
//! an archive goes through; file content is read from the repository a chunk at a time.

use std::io::{Read, Write};
use std::path::Path;

use rustic_core::repofile::{Node, NodeType, SnapshotFile};
use rustic_core::{IndexedFull, Repository, TreeId};

use super::{Access, OffsiteError, Snapshot, failed, of_fleet};
use crate::backup::archive::{Budget, Refused, Verified, verify_plain};

/// Bytes read from the repository at a time.
const CHUNK: usize = 1 << 20;

/// Finds `which` (`latest`: `tenant`'s newest; or a snapshot id or its prefix, of any tenant
/// of `fleet`: the restore refuses another tenant's unless asked), reads it in full and
/// verifies it as an archive would be.
pub fn read_snapshot(
    access: &Access,
    fleet: &str,
    tenant: &str,
    which: &str,
    budget: Budget,
) -> Result<(Snapshot, Verified), OffsiteError> {
    let repo = super::open(access, false)?;
    let fleet_filter = of_fleet(fleet);
    let tenant_tag = format!("tenant={tenant}");
    let latest = which == "latest";
    let filter =
        move |s: &SnapshotFile| fleet_filter(s) && (!latest || s.tags.contains(&tenant_tag));
    let none = || OffsiteError::NoSnapshot {
        repository: access.location.to_string(),
        tenant: tenant.to_string(),
        which: which.to_string(),
    };
    let snap = if latest {
        repo.get_matching_snapshots(&filter)
            .map_err(failed(access, "listing snapshots"))?
            .into_iter()
            .max_by(|a, b| a.time.cmp(&b.time))
            .ok_or_else(none)?
    } else {
        let found = repo
            .get_matching_snapshots(&filter)
            .map_err(failed(access, "listing snapshots"))?
            .into_iter()
            .filter(|s| !which.is_empty() && s.id.to_string().starts_with(which))
            .collect::<Vec<_>>();
        match found.len() {
            1 => found.into_iter().next().ok_or_else(none)?,
            0 => return Err(none()),
            _ => {
                return Err(OffsiteError::Repository {
                    repository: access.location.to_string(),
                    what: format!("finding snapshot `{which}`"),
                    reason: "more than one snapshot of the tenant starts with it".into(),
                });
            }
        }
    };
    let shown = Snapshot::of(&access.location.to_string(), &snap);
    let repo = repo
        .to_indexed()
        .map_err(failed(access, "reading its index"))?;
    let refused = |e: Refused| OffsiteError::Repository {
        repository: access.location.to_string(),
        what: format!("verifying snapshot {}", shown.short_id()),
        reason: e.to_string(),
    };
    // An in-process pipe, not an OS one: the CLI runs with SIGPIPE's default, and the reader
    // may stop before the writer's last bytes (the tar's end, or a refusal).
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let (tx, rx) = (
        ChannelWriter(tx),
        ChannelReader {
            rx,
            buf: Vec::new(),
            at: 0,
        },
    );
    let verified = std::thread::scope(|s| {
        let writer = s.spawn(|| write_tar(&repo, snap.tree, tx));
        let verified = verify_plain(rx, budget);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err("the reader of the snapshot panicked".into()));
        match (verified, written) {
            (Ok(v), Ok(())) => Ok(v),
            // What the verification refused; the writer then only saw its reader stop.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(Refused::Unreadable(e)),
        }
    })
    .map_err(refused)?;
    Ok((shown, verified))
}

fn write_tar<S: IndexedFull>(
    repo: &Repository<S>,
    root: TreeId,
    out: ChannelWriter,
) -> Result<(), String> {
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(CHUNK, out));
    tar.mode(tar::HeaderMode::Deterministic);
    walk(repo, &mut tar, root, Path::new(""))?;
    let out = tar.into_inner().map_err(|e| e.to_string())?;
    out.into_inner()
        .map_err(|e| e.to_string())?
        .flush()
        .map_err(|e| e.to_string())
}

fn walk<S: IndexedFull, W: Write>(
    repo: &Repository<S>,
    tar: &mut tar::Builder<W>,
    tree: TreeId,
    at: &Path,
) -> Result<(), String> {
    let tree = repo.get_tree(&tree).map_err(|e| e.to_string())?;
    for node in &tree.nodes {
        let path = at.join(node.name());
        let shown = path.to_string_lossy().into_owned();
        match node.node_type {
            NodeType::Dir => {
                // `data/` itself is implied, as in an archive.
                if at != Path::new("") {
                    let mut h = header(tar::EntryType::Directory, node, 0);
                    tar.append_data(&mut h, format!("{shown}/"), std::io::empty())
                        .map_err(|e| e.to_string())?;
                }
                let sub = node
                    .subtree
                    .ok_or_else(|| format!("directory `{shown}` has no tree"))?;
                walk(repo, tar, sub, &path)?;
            }
            NodeType::File => {
                let size = node.meta.size;
                let mut h = header(tar::EntryType::Regular, node, size);
                let body = Content::new(repo, node).map_err(|e| e.to_string())?;
                tar.append_data(&mut h, &shown, body)
                    .map_err(|e| format!("`{shown}`: {e}"))?;
            }
            _ => return Err(format!("`{shown}` is neither a file nor a directory")),
        }
    }
    Ok(())
}

fn header(kind: tar::EntryType, node: &Node, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(node.meta.mode.unwrap_or(0o600) & 0o7777);
    h.set_uid(node.meta.uid.unwrap_or(0).into());
    h.set_gid(node.meta.gid.unwrap_or(0).into());
    h.set_mtime(
        node.meta
            .mtime
            .map(|t| t.as_second().max(0) as u64)
            .unwrap_or(0),
    );
    h.set_size(size);
    h
}

/// One file's content, read from the repository a chunk at a time.
struct Content<'a, S: IndexedFull> {
    repo: &'a Repository<S>,
    file: rustic_core::vfs::OpenFile,
    size: usize,
    offset: usize,
    buf: bytes::Bytes,
}

impl<'a, S: IndexedFull> Content<'a, S> {
    fn new(repo: &'a Repository<S>, node: &Node) -> Result<Self, Box<rustic_core::RusticError>> {
        Ok(Content {
            repo,
            file: repo.open_file(node)?,
            size: node.meta.size as usize,
            offset: 0,
            buf: bytes::Bytes::new(),
        })
    }
}

impl<S: IndexedFull> Read for Content<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            if self.offset >= self.size {
                return Ok(0);
            }
            let len = CHUNK.min(self.size - self.offset);
            self.buf = self
                .repo
                .read_file_at(&self.file, self.offset, len)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if self.buf.is_empty() {
                return Err(std::io::Error::other("the file ends before its size"));
            }
            self.offset += self.buf.len();
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// The writing end of the in-process pipe: each write goes over as one message.
struct ChannelWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf.to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader stopped")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading end: ends when the writer is dropped.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.buf.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.buf = next;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
