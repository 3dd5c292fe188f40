//! The output directory of one ingest run: an exclusive lock (one run per
//! directory at a time), every artifact written to a temporary with a
//! unique name, and the commit that moves them into place together,
//! `ingest.json` last.
//!
//! Until the commit the directory holds the previous run untouched; a run
//! that fails (disk full, I/O error) removes its temporaries and leaves it
//! so. The commit first removes the previous `ingest.json`, then renames
//! `calls.parquet`, `quarantine.jsonl` and finally `ingest.json` into place:
//! an `ingest.json` always describes the files beside it, and a directory
//! without one holds no complete run (only a crash inside the commit's few
//! renames can leave it so).

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::artifact::{CALLS_FILE, INGEST_REPORT_FILE, QUARANTINE_FILE};
use crate::util::{io_failure, usage};

/// The lock file in the output directory (empty; held with an exclusive
/// advisory lock for the whole run, left in place afterwards).
pub const LOCK_FILE: &str = ".slmforge-ingest.lock";
/// Every temporary of a run starts with this (hidden: never read as input).
const TMP_PREFIX: &str = ".slmforge-tmp.";
/// The artifacts in commit order: `ingest.json` last.
pub const ARTIFACTS: [&str; 3] = [CALLS_FILE, QUARANTINE_FILE, INGEST_REPORT_FILE];

/// Distinguishes the runs of one process (library use, tests).
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A locked output directory.
pub struct OutputDir {
    dir: PathBuf,
    /// `PID-N-R`: unique among the runs of this machine at a time.
    tag: String,
    /// Created by this run: removed again when the run fails.
    created: bool,
    /// The commit has started changing the directory.
    touched: bool,
    committed: bool,
    lock: Option<File>,
}

impl OutputDir {
    /// Creates the directory when needed and takes its lock. A directory
    /// that cannot be created or written, or that another run holds, is a
    /// usage error naming it (`shown`). Temporaries left by a run that died
    /// are removed (only a lock holder writes them).
    pub fn open(dir: &Path, shown: &str) -> anyhow::Result<OutputDir> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| {
            usage(format!(
                "cannot create output directory {shown}: {}",
                super::source::io_reason(&e)
            ))
        })?;
        let mut out = OutputDir {
            dir: dir.to_path_buf(),
            tag: run_tag(),
            created,
            touched: false,
            committed: false,
            lock: None,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| {
                usage(format!(
                    "output directory {shown} is not writable: {}",
                    super::source::io_reason(&e)
                ))
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // Not ours to clean: the other run holds it.
                out.created = false;
                return Err(usage(format!(
                    "output directory {shown} is in use by another slmforge ingest \
                     (it holds {LOCK_FILE}); wait for it to finish or choose another --out"
                )));
            }
            Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                // A file system without locks (some network mounts): go on,
                // unprotected, and say so.
                eprintln!(
                    "ingest: warning: output directory {shown} cannot be locked on this file \
                     system; make sure no other ingest writes to it at the same time"
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(usage(format!(
                    "cannot lock output directory {shown}: {}",
                    super::source::io_reason(&e)
                )))
            }
        }
        out.lock = Some(lock);
        out.remove_temporaries(None);
        Ok(out)
    }

    /// This run's temporary for the artifact `name`.
    pub fn temp(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{TMP_PREFIX}{}.{name}", self.tag))
    }

    /// Creates the temporary for `name`.
    pub fn create_temp(&self, name: &str) -> anyhow::Result<File> {
        File::create(self.temp(name)).map_err(|e| write_failed(name, &e.into()))
    }

    /// Flushes the temporary of `name` to disk, then lets `hook` (tests:
    /// an injected failure) have its say: a write error surfaces here at
    /// the latest, before anything is moved into place.
    pub fn seal(
        &self,
        name: &str,
        hook: Option<fn(&str) -> std::io::Result<()>>,
    ) -> anyhow::Result<()> {
        let sync = || -> std::io::Result<()> {
            File::open(self.temp(name))?.sync_all()?;
            match hook {
                Some(h) => h(name),
                None => Ok(()),
            }
        };
        sync().map_err(|e| write_failed(name, &e.into()))
    }

    /// Moves the sealed temporaries into place: the previous `ingest.json`
    /// goes first, the new one comes last (see the module doc).
    pub fn commit(&mut self) -> anyhow::Result<()> {
        let report = self.dir.join(INGEST_REPORT_FILE);
        match std::fs::remove_file(&report) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_failed(INGEST_REPORT_FILE, &e.into())),
        }
        self.touched = true;
        for name in ARTIFACTS {
            std::fs::rename(self.temp(name), self.dir.join(name))
                .map_err(|e| write_failed(name, &e.into()))?;
        }
        self.committed = true;
        // Make the renames durable (best effort where directories cannot be opened).
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Whether a failed commit got as far as changing the directory (it
    /// then holds no complete run; before that, the previous one).
    pub fn touched(&self) -> bool {
        self.touched
    }

    /// Removes temporaries: this run's (`Some(tag)`) or every run's (`None`,
    /// under the lock: left by runs that died).
    fn remove_temporaries(&self, tag: Option<&str>) {
        let prefix = match tag {
            Some(t) => format!("{TMP_PREFIX}{t}."),
            None => TMP_PREFIX.to_string(),
        };
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for OutputDir {
    /// A run that did not commit leaves no trace: its temporaries go, and a
    /// directory it created goes too (when nothing else is in it).
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.lock.is_some() {
            self.remove_temporaries(Some(&self.tag.clone()));
        }
        if self.created {
            let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// `PID-N-R`: the process, the run within it, and a few random bits (a
/// reused PID of a dead run cannot collide with its leftovers).
fn run_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    format!("{}-{n}-{:08x}", std::process::id(), h.finish() as u32)
}

/// An I/O failure writing the artifact `name`: exit code 74, a message
/// with the error's kind (never a path or a value).
pub fn write_failed(name: &str, e: &anyhow::Error) -> anyhow::Error {
    io_failure(format!("cannot write {name}: {}", reason(e)))
}

/// What went wrong, without paths: the first I/O error in the chain as
/// words, else the innermost error's message.
fn reason(e: &anyhow::Error) -> String {
    e.chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .map(super::source::io_reason)
        .unwrap_or_else(|| e.root_cause().to_string())
}
