//! Reading GGUF files: typed metadata access and tensors dequantized to f32.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

/// An opened GGUF file: its metadata and tensor directory (tensor data is
/// read on demand).
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file =
            File::open(path).with_context(|| format!("opening GGUF file {}", path.display()))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader)
            .with_context(|| format!("reading GGUF header of {}", path.display()))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.content.tensor_infos.keys().map(String::as_str)
    }

    /// Tensor names in file order (by data offset).
    pub fn tensor_names_in_order(&self) -> Vec<String> {
        let mut v: Vec<(&String, u64)> = self
            .content
            .tensor_infos
            .iter()
            .map(|(n, i)| (n, i.offset))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
        v.into_iter().map(|(n, _)| n.clone()).collect()
    }

    /// A tensor's dimensions in candle's `[out, in]` order, without reading it.
    pub fn tensor_dims(&self, name: &str) -> Result<Vec<usize>> {
        let info =
            self.content.tensor_infos.get(name).with_context(|| {
                format!("tensor {name} is missing from {}", self.path.display())
            })?;
        Ok(info.shape.dims().to_vec())
    }

    /// A tensor as stored (quantized blocks kept).
    pub fn qtensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        self.content
            .tensor(&mut self.reader, name, device)
            .with_context(|| format!("reading tensor {name} from {}", self.path.display()))
    }

    /// A tensor dequantized to f32, in candle's `[out, in]` order.
    pub fn tensor_f32(&mut self, name: &str, device: &Device) -> Result<Tensor> {
        let q = self
            .content
            .tensor(&mut self.reader, name, device)
            .with_context(|| format!("reading tensor {name} from {}", self.path.display()))?;
        q.dequantize(device)
            .with_context(|| format!("dequantizing tensor {name}"))
    }

    pub fn u32(&self, key: &str) -> Result<u32> {
        md_u32(self.metadata(), key)
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        md_f32(self.metadata(), key)
    }

    pub fn string(&self, key: &str) -> Result<&str> {
        md_str(self.metadata(), key)
    }
}

fn missing(key: &str) -> anyhow::Error {
    anyhow!("GGUF metadata key {key} is missing")
}

/// An integer metadata value of any integer type that fits a u32.
pub fn md_u32(md: &HashMap<String, Value>, key: &str) -> Result<u32> {
    let v = md.get(key).ok_or_else(|| missing(key))?;
    value_u32(v).ok_or_else(|| anyhow!("GGUF metadata key {key} is not an unsigned integer"))
}

pub fn value_u32(v: &Value) -> Option<u32> {
    match *v {
        Value::U8(x) => Some(x as u32),
        Value::U16(x) => Some(x as u32),
        Value::U32(x) => Some(x),
        Value::U64(x) => u32::try_from(x).ok(),
        Value::I8(x) => u32::try_from(x).ok(),
        Value::I16(x) => u32::try_from(x).ok(),
        Value::I32(x) => u32::try_from(x).ok(),
        Value::I64(x) => u32::try_from(x).ok(),
        _ => None,
    }
}

pub fn md_f32(md: &HashMap<String, Value>, key: &str) -> Result<f32> {
    match md.get(key).ok_or_else(|| missing(key))? {
        Value::F32(x) => Ok(*x),
        Value::F64(x) => Ok(*x as f32),
        v => value_u32(v)
            .map(|x| x as f32)
            .ok_or_else(|| anyhow!("GGUF metadata key {key} is not a number")),
    }
}

pub fn md_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a str> {
    match md.get(key).ok_or_else(|| missing(key))? {
        Value::String(s) => Ok(s),
        _ => bail!("GGUF metadata key {key} is not a string"),
    }
}

pub fn md_bool(md: &HashMap<String, Value>, key: &str) -> Option<bool> {
    match md.get(key)? {
        Value::Bool(b) => Some(*b),
        v => value_u32(v).map(|x| x != 0),
    }
}

pub fn md_array<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a [Value]> {
    match md.get(key).ok_or_else(|| missing(key))? {
        Value::Array(a) => Ok(a),
        _ => bail!("GGUF metadata key {key} is not an array"),
    }
}

pub fn md_str_array<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<Vec<&'a str>> {
    md_array(md, key)?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            _ => bail!("GGUF metadata key {key} holds a non-string element"),
        })
        .collect()
}
