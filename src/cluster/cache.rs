//! On-disk embedding cache: `DIR/cache/embeddings-<checksum prefix>.bin`,
//! keyed by the SHA-256 of the exact text embedded, one file per embedder
//! checksum, so a re-run or an incremental run embeds only new texts.
//!
//! Layout: a header (`SLMEMB01`, dimension as u32 LE, the 64 hex characters
//! of the embedder checksum), then records of 32 key bytes and `dim` f32 LE.
//! New records are appended in one write and fsynced; a torn last record
//! (a crash mid-append) is ignored on load and cut off by the next append.
//!
//! The embedding phase of the stage lives here too: [`text_table`] (the
//! distinct texts) and [`embed_texts`] (cache first, then the model).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rayon::prelude::*;

use super::CacheStats;
use crate::ml::embed::TextEmbedder;
use crate::ml::features::CallFacts;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"SLMEMB01";
const HEADER_LEN: usize = 8 + 4 + 64;

/// Key of a text in the cache.
pub type Key = [u8; 32];

pub fn key(text: &str) -> Key {
    Sha256::digest(text.as_bytes()).into()
}

/// The cache of one embedder, loaded into memory.
pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    checksum: String,
    map: HashMap<Key, Vec<f32>>,
    /// Bytes of whole records on disk (header included); 0 when no file yet.
    valid_len: u64,
}

impl EmbeddingCache {
    /// Path of the cache file for an embedder inside a dataset directory.
    pub fn path_for(dataset_dir: &Path, checksum: &str) -> PathBuf {
        let prefix: String = checksum.chars().take(16).collect();
        dataset_dir
            .join("cache")
            .join(format!("embeddings-{prefix}.bin"))
    }

    /// Loads the cache (an absent file is an empty cache; a file written
    /// for another embedder or dimension is ignored and replaced).
    pub fn open(dataset_dir: &Path, checksum: &str, dim: usize) -> anyhow::Result<EmbeddingCache> {
        let path = Self::path_for(dataset_dir, checksum);
        let mut cache = EmbeddingCache {
            path,
            dim,
            checksum: checksum.to_string(),
            map: HashMap::new(),
            valid_len: 0,
        };
        let mut bytes = Vec::new();
        match File::open(&cache.path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .with_context(|| format!("reading {}", cache.path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cache),
            Err(e) => return Err(e).with_context(|| format!("opening {}", cache.path.display())),
        }
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Ok(cache);
        }
        let file_dim = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        if file_dim != dim || &bytes[12..HEADER_LEN] != checksum.as_bytes() {
            return Ok(cache);
        }
        let rec = 32 + 4 * dim;
        let whole = (bytes.len() - HEADER_LEN) / rec;
        cache.map.reserve(whole);
        for r in 0..whole {
            let b = &bytes[HEADER_LEN + r * rec..HEADER_LEN + (r + 1) * rec];
            let k: Key = b[..32].try_into().expect("32 bytes");
            let v: Vec<f32> = b[32..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            cache.map.insert(k, v);
        }
        cache.valid_len = (HEADER_LEN + whole * rec) as u64;
        Ok(cache)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, k: &Key) -> Option<&[f32]> {
        self.map.get(k).map(Vec::as_slice)
    }

    /// Adds records in memory and appends them to the file (created with
    /// its header when absent or stale), then fsyncs.
    pub fn append(&mut self, records: &[(Key, Vec<f32>)]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let dir = self.path.parent().expect("cache file has a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let rec = 32 + 4 * self.dim;
        let mut buf = Vec::with_capacity(HEADER_LEN + records.len() * rec);
        let fresh = self.valid_len == 0;
        if fresh {
            buf.extend_from_slice(MAGIC);
            buf.extend_from_slice(&(self.dim as u32).to_le_bytes());
            buf.extend_from_slice(self.checksum.as_bytes());
        }
        for (k, v) in records {
            if v.len() != self.dim {
                bail!(
                    "embedding of dimension {} where the cache holds {}",
                    v.len(),
                    self.dim
                );
            }
            buf.extend_from_slice(k);
            for x in v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        }
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        // Drop a stale file or a torn tail before appending.
        f.set_len(self.valid_len)
            .with_context(|| format!("truncating {}", self.path.display()))?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(self.valid_len))?;
        f.write_all(&buf)
            .with_context(|| format!("writing {}", self.path.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        self.valid_len += buf.len() as u64;
        for (k, v) in records {
            self.map.insert(*k, v.clone());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The embedding phase.

/// Texts embedded per chunk; each chunk is appended to the cache as it
/// completes, so an interrupted run keeps its work.
const EMBED_CHUNK: usize = 1024;

/// The distinct non-empty texts of the calls and, per call, the index of
/// its system and user text among them (first-seen order).
pub struct TextTable {
    pub texts: Vec<String>,
    pub system_of: Vec<Option<usize>>,
    pub user_of: Vec<Option<usize>>,
}

pub fn text_table(facts: &[CallFacts]) -> TextTable {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<String> = Vec::new();
    let mut system_of = Vec::with_capacity(facts.len());
    let mut user_of = Vec::with_capacity(facts.len());
    for f in facts {
        for (s, out) in [(&f.system, &mut system_of), (&f.user, &mut user_of)] {
            if s.is_empty() {
                out.push(None);
                continue;
            }
            let next = texts.len();
            let i = *index.entry(s.as_str()).or_insert(next);
            if i == next {
                texts.push(s.clone());
            }
            out.push(Some(i));
        }
    }
    TextTable {
        texts,
        system_of,
        user_of,
    }
}

/// Embeds the texts, from the cache where possible.
pub fn embed_texts(
    dataset_dir: &Path,
    texts: &[String],
    embedder: &dyn TextEmbedder,
    progress: bool,
) -> anyhow::Result<(Vec<Vec<f32>>, CacheStats)> {
    let mut cache = EmbeddingCache::open(dataset_dir, embedder.checksum(), embedder.dim())?;
    let keys: Vec<Key> = texts.par_iter().map(|t| key(t)).collect();
    let mut out: Vec<Option<Vec<f32>>> = keys
        .iter()
        .map(|k| cache.get(k).map(<[f32]>::to_vec))
        .collect();
    let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
    let stats = CacheStats {
        texts: texts.len(),
        hits: texts.len() - missing.len(),
        misses: missing.len(),
        file: cache.path().to_path_buf(),
        model_ran: !missing.is_empty(),
    };
    if !missing.is_empty() {
        let pb = super::progress_bar(progress, missing.len(), "embed");
        for chunk in missing.chunks(EMBED_CHUNK) {
            let refs: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let vecs = embedder.embed(&refs, &pb)?;
            anyhow::ensure!(
                vecs.len() == chunk.len() && vecs.iter().all(|v| v.len() == embedder.dim()),
                "the embedder returned {} vectors for {} texts",
                vecs.len(),
                chunk.len()
            );
            let records: Vec<(Key, Vec<f32>)> =
                chunk.iter().zip(vecs).map(|(&i, v)| (keys[i], v)).collect();
            cache.append(&records)?;
            for (&i, (_, v)) in chunk.iter().zip(records) {
                out[i] = Some(v);
            }
        }
        pb.finish_and_clear();
    }
    Ok((
        out.into_iter()
            .map(|v| v.expect("every text embedded"))
            .collect(),
        stats,
    ))
}
