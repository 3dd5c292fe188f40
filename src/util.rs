//! Small shared helpers: exit-code-carrying errors (usage, I/O failure),
//! progress bars, hashing, atomic writes.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// An unusable invocation (no input, unreadable path, output not writable,
/// bad option value). `main` turns it into exit code 2 with a one-line message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand: `return Err(usage(format!(...)))`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Exit code of a run that failed writing its outputs (disk full, I/O
/// error): `EX_IOERR` of sysexits.h.
pub const EXIT_IO_ERROR: u8 = 74;

/// Writing an output failed (disk full, I/O error) after the invocation was
/// found usable: exit code [`EXIT_IO_ERROR`] with a one-line message. The
/// message names no value of the input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IoFailure(pub String);

/// Shorthand: `return Err(io_failure(format!(...)))`.
pub fn io_failure(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(IoFailure(msg.into()))
}

/// A byte-count progress bar with rate and ETA; hidden when stderr is not a
/// terminal or when `SLMFORGE_NO_PROGRESS` is set, so logs and tests stay clean.
pub fn bytes_bar(total: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), draw_target());
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb
}

/// An item-count progress bar with rate and ETA.
pub fn count_bar(total: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), draw_target());
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb
}

fn draw_target() -> ProgressDrawTarget {
    if std::env::var_os("SLMFORGE_NO_PROGRESS").is_some() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Writes a file atomically: to a temporary sibling, fsync, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Pretty JSON written atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// The models directory: `$SLMFORGE_MODELS`, else `./models`.
pub fn models_dir() -> std::path::PathBuf {
    std::env::var_os("SLMFORGE_MODELS")
        .map(Into::into)
        .unwrap_or_else(|| "models".into())
}
