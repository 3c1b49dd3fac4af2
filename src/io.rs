//! Writing output files so that a failed or interrupted run never leaves a file that looks
//! complete: write to a temporary sibling, sync it, rename into place on success and sync the
//! folder, so that after a crash or power loss the name holds either the old or the new bytes.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file being written; it appears under its real name only when [`AtomicFile::commit`] runs.
/// Dropped without a commit, the temporary file is removed.
pub struct AtomicFile {
    path: PathBuf,
    temporary: PathBuf,
    writer: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Start writing `path` (through `path.tmp<pid>` beside it).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(format!(".tmp{}", std::process::id()));
        let temporary = path.with_file_name(name);
        let file = std::fs::File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
        Ok(AtomicFile {
            path,
            temporary,
            writer: Some(std::io::BufWriter::new(file)),
        })
    }

    /// Append one JSON value and a newline.
    pub fn write_json_line<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        let writer = self.writer.as_mut().expect("not yet committed");
        serde_json::to_writer(&mut *writer, value)
            .map_err(|e| Error::io(&self.temporary, std::io::Error::other(e)))?;
        writer
            .write_all(b"\n")
            .map_err(|e| Error::io(&self.temporary, e))
    }

    /// Append raw bytes.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let writer = self.writer.as_mut().expect("not yet committed");
        writer
            .write_all(bytes)
            .map_err(|e| Error::io(&self.temporary, e))
    }

    /// Flush, sync and rename into place.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("committed once");
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(&self.temporary, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.temporary, e))?;
        std::fs::rename(&self.temporary, &self.path).map_err(|e| Error::io(&self.path, e))?;
        sync_parent(&self.path)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Flush `dir`'s entries (names created, renamed or removed in it) to disk. A no-op where
/// directories cannot be opened for syncing (Windows).
pub fn sync_dir(dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    #[cfg(unix)]
    {
        let handle = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
        handle.sync_all().map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// [`sync_dir`] on the folder holding `path`.
pub fn sync_parent(path: impl AsRef<Path>) -> Result<()> {
    match path.as_ref().parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir("."),
    }
}

/// Flush the contents of the existing file `path` to disk.
pub fn sync_file(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Write `bytes` to `path` atomically (the file and its folder's entry synced to disk).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// `path` made absolute where it exists (as it stays the same wherever a command runs from), as
/// text: how resume checks and shard manifests record input files.
pub fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// A fingerprint of the file `path`, or of the regular files directly inside the folder `path`
/// (and their names): sizes, and an FNV-1a hash of 16 blocks of 64 KiB sampled evenly through
/// each file.
/// What a resumed run compares to know that the frozen weights it reloads are the ones the
/// checkpoint was trained on: cheap for a model of any size (at most 1 MiB read per file), and
/// any other weights of the same shapes change the sampled bytes. "unreadable" where `path`
/// cannot be read.
pub fn fingerprint(path: &Path) -> String {
    fingerprint_files(path).unwrap_or_else(|_| "unreadable".into())
}

fn fingerprint_files(path: &Path) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    const BLOCKS: u64 = 16;
    const BLOCK: u64 = 64 << 10;
    let mut files = Vec::new();
    let folder = path.is_dir();
    if folder {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut hash = Fnv::default();
    let mut mix = |bytes: &[u8]| {
        hash.bytes(bytes);
    };
    let mut total = 0u64;
    let mut block = Vec::with_capacity(BLOCK as usize);
    for file in &files {
        let mut f = std::fs::File::open(file)?;
        let size = f.metadata()?.len();
        total += size;
        if folder {
            mix(file.file_name().unwrap_or_default().as_encoded_bytes());
        }
        mix(&size.to_le_bytes());
        for i in 0..BLOCKS {
            let start = (size.saturating_sub(BLOCK)) * i / (BLOCKS - 1);
            f.seek(SeekFrom::Start(start))?;
            block.clear();
            Read::by_ref(&mut f).take(BLOCK).read_to_end(&mut block)?;
            mix(&block);
        }
    }
    Ok(format!(
        "{} files, {total} bytes, sampled hash {:016x}",
        files.len(),
        hash.finish()
    ))
}

/// FNV-1a, 64-bit: a hash stable across Rust releases and machines, unlike std's hasher.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Mix in `bytes`.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    /// Mix in `value`'s eight little-endian bytes.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}
