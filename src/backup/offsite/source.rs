//! The archive's tar, spooled encrypted, as the source rustic_core backs up: indexed once
//! (paths, modes, sizes, where each file's data starts), then handed out in path order, each
//! file opened on its own reader that decrypts just its part of the spool, so files may be
//! read in parallel and none is ever whole in memory.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    ErrorKind, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
};

use crate::backup::{DATA_PREFIX, MANIFEST_ENTRY};
use crate::engine::spool::Spool;

/// The snapshot's paths, as restic shows them.
pub const PATHS: [&str; 2] = ["data", "manifest.json"];

/// Go's `os.ModeDir`, as restic stores a directory's mode.
const GO_MODE_DIR: u32 = 1 << 31;

struct Item {
    path: PathBuf,
    dir: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    offset: u64,
}

pub struct SpoolSource {
    spool: Arc<Spool>,
    items: Vec<Item>,
}

impl SpoolSource {
    /// Reads the tar's headers (the data is skipped, never kept).
    pub fn index(spool: Arc<Spool>) -> Result<SpoolSource, String> {
        let mut archive = tar::Archive::new(std::io::BufReader::new(spool.reader()?));
        let mut items = vec![Item {
            path: PathBuf::from("data"),
            dir: true,
            mode: 0o700,
            uid: crate::manifest::GATEWAY_UID,
            gid: crate::manifest::GATEWAY_GID,
            mtime: 0,
            size: 0,
            offset: 0,
        }];
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            let raw = entry.path_bytes().into_owned();
            let path = crate::backup::archive::safe_path(&raw)?;
            let h = entry.header();
            let kind = h.entry_type();
            let path = path.trim_end_matches('/');
            if path == DATA_PREFIX.trim_end_matches('/') {
                continue;
            }
            if !(path.starts_with(DATA_PREFIX) || path == MANIFEST_ENTRY) {
                return Err(format!("unexpected entry `{path}`"));
            }
            if !(kind.is_file() || kind.is_dir()) {
                return Err(format!("entry `{path}` is neither a file nor a directory"));
            }
            let mtime = h.mtime().unwrap_or(0);
            items.push(Item {
                path: PathBuf::from(path),
                dir: kind.is_dir(),
                mode: h.mode().map_err(|e| e.to_string())? & 0o7777,
                uid: h.uid().unwrap_or(0) as u32,
                gid: h.gid().unwrap_or(0) as u32,
                mtime: i64::try_from(mtime).unwrap_or(0),
                size: h.size().map_err(|e| e.to_string())?,
                offset: entry.raw_file_position(),
            });
        }
        // Path order, a directory's content right after it: as rustic_core builds trees.
        items.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(SpoolSource { spool, items })
    }
}

/// One file's data in the spool.
pub struct SpoolOpen {
    spool: Arc<Spool>,
    offset: u64,
    size: u64,
}

impl ReadSourceOpen for SpoolOpen {
    type Reader = Box<dyn Read + Send>;

    fn open(self) -> RusticResult<Self::Reader> {
        let r = self.spool.reader_at(self.offset, self.size).map_err(|e| {
            RusticError::new(ErrorKind::Backend, "reading the spooled copy: {e}")
                .attach_context("e", e)
        })?;
        Ok(Box::new(r))
    }
}

impl ReadSource for SpoolSource {
    type Open = SpoolOpen;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<SpoolOpen>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(Some(self.items.iter().map(|i| i.size).sum()))
    }

    fn entries(&self) -> Self::Iter {
        self.items
            .iter()
            .map(|i| {
                let name = i.path.file_name().unwrap_or_default();
                let meta = Metadata {
                    mode: Some(if i.dir { i.mode | GO_MODE_DIR } else { i.mode }),
                    mtime: rustic_core::jiff::Timestamp::from_second(i.mtime).ok(),
                    uid: Some(i.uid),
                    gid: Some(i.gid),
                    size: if i.dir { 0 } else { i.size },
                    ..Metadata::default()
                };
                let kind = if i.dir { NodeType::Dir } else { NodeType::File };
                Ok(ReadSourceEntry {
                    path: i.path.clone(),
                    node: Node::new_node(name, kind, meta),
                    open: (!i.dir).then(|| SpoolOpen {
                        spool: self.spool.clone(),
                        offset: i.offset,
                        size: i.size,
                    }),
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }
}
