//! The model's tokenizer, rebuilt from GGUF metadata as a `tokenizers::Tokenizer`:
//! byte-level BPE from `tokenizer.ggml.tokens` + `merges`, the pre-tokenizer
//! named by `tokenizer.ggml.pre`, a ByteLevel decoder, and control tokens
//! (token type 3) as special added tokens.
//!
//! Supported `tokenizer.ggml.pre` values:
//! * `smollm`, `starcoder`: Digits (one per token), then GPT-2 ByteLevel;
//! * `gpt2`, `default` or absent: GPT-2 ByteLevel;
//! * `llama-bpe`/`llama3`/`dbrx`/`smaug-bpe` (Llama 3 split regex, digits in
//!   groups of three) and `qwen2` (single digits), then ByteLevel without its
//!   own regex; Llama 3 also ignores merges for words in the vocabulary.
//!
//! SentencePiece vocabularies with scores (`tokenizer.ggml.model = llama`:
//! Gemma, Llama 2) become a BPE over `▁`-escaped text with byte fallback,
//! its merges recovered from the scores as Hugging Face's GGUF loader and
//! `convert_slow_tokenizer` do (a pair merges when both halves and the
//! whole are tokens, ranked by the whole's score): the merge order of
//! llama.cpp's SPM tokenizer. No pre-tokenizer splits the text (llama.cpp
//! runs the bigram merges over it whole); a `▁` is prepended only when
//! `tokenizer.ggml.add_space_prefix` says so.
//!
//! Other tokenizer models are refused with a clear error.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::NormalizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::{md_array, md_bool, md_str, md_str_array, md_u32, value_u32};

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: u32 = 3;
const TOKEN_TYPE_USER_DEFINED: u32 = 4;

/// A tokenizer plus the ids the chat template and generation need.
#[derive(Clone)]
pub struct LmTokenizer {
    inner: Tokenizer,
    tokens: Vec<String>,
    bos: Option<u32>,
    eos: u32,
    pad: Option<u32>,
    add_bos: bool,
    special_ids: Vec<u32>,
    /// Byte-level BPE (GPT-2 byte alphabet) rather than SentencePiece.
    byte_level: bool,
}

fn tk_err(e: tokenizers::Error) -> anyhow::Error {
    anyhow!("tokenizer: {e}")
}

impl LmTokenizer {
    /// Builds the tokenizer from GGUF metadata.
    pub fn from_gguf(md: &HashMap<String, Value>) -> Result<LmTokenizer> {
        let model = md_str(md, "tokenizer.ggml.model").unwrap_or("gpt2");
        let tokens: Vec<String> = md_str_array(md, "tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_string)
            .collect();
        let byte_level = model == "gpt2";
        let inner = match model {
            "gpt2" => byte_level_bpe(md, &tokens)?,
            "llama" => sentencepiece_bpe(md, &tokens)?,
            other => bail!(
                "unsupported tokenizer model {other:?}: supported are byte-level BPE (gpt2) and SentencePiece with scores (llama)"
            ),
        };
        LmTokenizer::finish(md, inner, tokens, byte_level)
    }

    fn finish(
        md: &HashMap<String, Value>,
        mut inner: Tokenizer,
        tokens: Vec<String>,
        byte_level: bool,
    ) -> Result<LmTokenizer> {
        let types: Vec<u32> = match md_array(md, "tokenizer.ggml.token_type") {
            Ok(a) => a.iter().map(|v| value_u32(v).unwrap_or(1)).collect(),
            Err(_) => vec![1; tokens.len()],
        };
        let mut special_ids = Vec::new();
        let mut specials = Vec::new();
        let mut user_defined = Vec::new();
        for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
            match *ty {
                TOKEN_TYPE_CONTROL => {
                    special_ids.push(i as u32);
                    specials.push(AddedToken::from(t.clone(), true));
                }
                TOKEN_TYPE_USER_DEFINED => user_defined.push(AddedToken::from(t.clone(), false)),
                _ => {}
            }
        }
        inner.add_special_tokens(specials).map_err(tk_err)?;
        if !user_defined.is_empty() {
            inner.add_tokens(user_defined).map_err(tk_err)?;
        }
        let eos =
            md_u32(md, "tokenizer.ggml.eos_token_id").context("the tokenizer has no EOS token")?;
        let check = |id: u32, what: &str| -> Result<u32> {
            if (id as usize) < tokens.len() {
                Ok(id)
            } else {
                bail!(
                    "{what} token id {id} outside the vocabulary of {}",
                    tokens.len()
                )
            }
        };
        Ok(LmTokenizer {
            eos: check(eos, "EOS")?,
            bos: md_u32(md, "tokenizer.ggml.bos_token_id")
                .ok()
                .map(|b| check(b, "BOS"))
                .transpose()?,
            pad: md_u32(md, "tokenizer.ggml.padding_token_id")
                .ok()
                .map(|b| check(b, "padding"))
                .transpose()?,
            add_bos: md_bool(md, "tokenizer.ggml.add_bos_token").unwrap_or(false),
            inner,
            tokens,
            special_ids,
            byte_level,
        })
    }

    /// Token ids of `text`; special tokens written in the text (e.g.
    /// `<|im_start|>`) become their single ids. No BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(tk_err)?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`; `skip_special` drops control tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tk_err)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary entry of `id` (byte-level form, e.g. `Ġthe`).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// Padding id for batches: the GGUF's padding token, else EOS.
    pub fn pad_id(&self) -> u32 {
        self.pad.unwrap_or(self.eos)
    }

    /// Whether the model expects a BOS token before the text (chat templates
    /// usually write it themselves).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// The bytes each token id stands for in generated text, for masks over
    /// the vocabulary (schema-guided decoding): byte-level tokens through the
    /// GPT-2 byte alphabet, SentencePiece pieces with `▁` as a space and
    /// `<0xNN>` as byte NN. Control tokens are `0xFF` + their name, so no text
    /// ever matches them (the `toktrie` convention).
    pub fn token_bytes(&self) -> Vec<Vec<u8>> {
        let unicode_to_byte = gpt2_unicode_to_byte();
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if self.is_special(i as u32) {
                    let mut b = vec![0xFF];
                    b.extend_from_slice(t.as_bytes());
                    return b;
                }
                if self.byte_level {
                    let mut b = Vec::with_capacity(t.len());
                    for c in t.chars() {
                        match unicode_to_byte.get(&c) {
                            Some(&x) => b.push(x),
                            None => b.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                    return b;
                }
                if let Some(hex) = t.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')) {
                    if let Ok(x) = u8::from_str_radix(hex, 16) {
                        return vec![x];
                    }
                }
                t.replace('\u{2581}', " ").into_bytes()
            })
            .collect()
    }

    /// The underlying `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// GPT-2's byte alphabet, inverted: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for U+0100 onwards in byte order.
fn gpt2_unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0u32..256 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let c = if printable {
            char::from_u32(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra)
        };
        map.insert(c.expect("valid code point"), b as u8);
    }
    map
}

/// Byte-level BPE (`tokenizer.ggml.model = gpt2`) with the pre-tokenizer
/// `tokenizer.ggml.pre` names.
fn byte_level_bpe(md: &HashMap<String, Value>, tokens: &[String]) -> Result<Tokenizer> {
    let merges: Vec<(String, String)> = md_str_array(md, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| {
                    format!(
                        "malformed BPE merge (no space) among {} merges",
                        tokens.len()
                    )
                })
        })
        .collect::<Result<_>>()?;
    let mut vocab = Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    let pre = md_str(md, "tokenizer.ggml.pre").unwrap_or("default");
    let byte_level = ByteLevel::new(false, true, true);
    let byte_level_no_regex = ByteLevel::new(false, true, false);
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Ok(PreTokenizerWrapper::Split(
            Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tk_err)?,
        ))
    };
    let (pre_tok, ignore_merges) = match pre {
            "smollm" | "starcoder" => (
                PreTokenizerWrapper::Sequence(Sequence::new(vec![
                    PreTokenizerWrapper::Digits(Digits::new(true)),
                    PreTokenizerWrapper::ByteLevel(byte_level),
                ])),
                false,
            ),
            "gpt2" | "default" | "gpt-2" => (PreTokenizerWrapper::ByteLevel(byte_level), false),
            "llama-bpe" | "llama3" | "dbrx" | "smaug-bpe" => (
                PreTokenizerWrapper::Sequence(Sequence::new(vec![
                    split(LLAMA3_SPLIT)?,
                    PreTokenizerWrapper::ByteLevel(byte_level_no_regex),
                ])),
                true,
            ),
            "qwen2" => (
                PreTokenizerWrapper::Sequence(Sequence::new(vec![
                    split(QWEN2_SPLIT)?,
                    PreTokenizerWrapper::ByteLevel(byte_level_no_regex),
                ])),
                false,
            ),
            other => bail!(
                "unsupported pre-tokenizer tokenizer.ggml.pre = {other:?} (supported: smollm, starcoder, gpt2, default, llama-bpe, llama3, dbrx, smaug-bpe, qwen2)"
            ),
        };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(tk_err)?;
    let mut inner = Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pre_tok));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(inner)
}

/// SentencePiece BPE (`tokenizer.ggml.model = llama`): merges from the scores.
fn sentencepiece_bpe(md: &HashMap<String, Value>, tokens: &[String]) -> Result<Tokenizer> {
    let scores: Vec<f32> = md_array(md, "tokenizer.ggml.scores")
        .context("a SentencePiece vocabulary needs tokenizer.ggml.scores")?
        .iter()
        .map(|v| match v {
            Value::F32(f) => Ok(*f),
            Value::F64(f) => Ok(*f as f32),
            other => bail!("tokenizer.ggml.scores holds {other:?}, not floats"),
        })
        .collect::<Result<_>>()?;
    if scores.len() != tokens.len() {
        bail!("{} scores for {} tokens", scores.len(), tokens.len())
    }
    let mut vocab = Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    let merges = merges_from_scores(tokens, &scores, &vocab);
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true);
    if let Ok(unk) = md_u32(md, "tokenizer.ggml.unknown_token_id") {
        if let Some(t) = tokens.get(unk as usize) {
            builder = builder.unk_token(t.clone());
        }
    }
    let bpe = builder.build().map_err(tk_err)?;
    let mut inner = Tokenizer::new(bpe);
    let prefix = md_bool(md, "tokenizer.ggml.add_space_prefix").unwrap_or(false);
    let mut norms: Vec<NormalizerWrapper> = Vec::new();
    if prefix {
        norms.push(Prepend::new("\u{2581}".to_string()).into());
    }
    norms.push(Replace::new(" ", "\u{2581}").map_err(tk_err)?.into());
    inner
        .with_normalizer(Some(NormalizerSequence::new(norms)))
        .map_err(tk_err)?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("\u{2581}", " ").map_err(tk_err)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(inner)
}

/// BPE merges of a SentencePiece vocabulary: every split of a token into
/// two tokens, ranked by the whole token's score (highest first), then by
/// the ids of the halves; as Hugging Face's `generate_merges`.
fn merges_from_scores(tokens: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    let mut all: Vec<(f32, u32, u32, usize, usize)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if vocab.get(t) != Some(&(i as u32)) {
            continue; // a duplicate entry
        }
        for (cut, _) in t.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (vocab.get(&t[..cut]), vocab.get(&t[cut..])) {
                all.push((scores[i], l, r, i, cut));
            }
        }
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    all.into_iter()
        .map(|(_, _, _, i, cut)| (tokens[i][..cut].to_string(), tokens[i][cut..].to_string()))
        .collect()
}
