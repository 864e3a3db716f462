//! Text <-> tokens. Byte-level models (vocabulary <= 256, no tokenizer metadata) use the
//! bytes themselves; BPE models use the `tokenizers` crate, from the tokenizer.json beside
//! the model or rebuilt from the GGUF's `tokenizer.ggml.*` metadata.

use crate::error::{Error, Result, format_err, io_err};
use crate::model::LoadedModel;
use mamba_core::gguf::Value;
use std::path::Path;

/// How a model's text is encoded.
pub enum TextCodec {
    /// One token per byte.
    Bytes,
    /// A BPE tokenizer.
    Bpe(Box<tokenizers::Tokenizer>),
}

impl std::fmt::Debug for TextCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextCodec::Bytes => write!(f, "Bytes"),
            TextCodec::Bpe(_) => write!(f, "Bpe"),
        }
    }
}

impl TextCodec {
    /// The codec for a model loaded from `model_path`.
    pub fn for_model(model: &LoadedModel, model_path: &Path) -> Result<Self> {
        if model.is_byte_level() {
            return Ok(TextCodec::Bytes);
        }
        let dir = if model_path.is_dir() {
            Some(model_path)
        } else {
            model_path.parent()
        };
        if let Some(tj) = dir.map(|d| d.join("tokenizer.json")).filter(|p| p.exists()) {
            let t = tokenizers::Tokenizer::from_file(&tj)
                .map_err(|e| format_err(&tj, format!("cannot load tokenizer: {e}")))?;
            return Ok(TextCodec::Bpe(Box::new(t)));
        }
        let json = gguf_tokenizer_json(model)?;
        let t = tokenizers::Tokenizer::from_bytes(json.as_bytes()).map_err(|e| {
            Error::Invalid(format!("{}: bad tokenizer metadata: {e}", model.source))
        })?;
        Ok(TextCodec::Bpe(Box::new(t)))
    }

    /// Encode text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            TextCodec::Bytes => Ok(text.bytes().map(u32::from).collect()),
            TextCodec::Bpe(t) => Ok(t
                .encode(text, false)
                .map_err(|e| Error::Invalid(format!("tokenizer: {e}")))?
                .get_ids()
                .to_vec()),
        }
    }

    /// Decode tokens to bytes (lossy UTF-8 for BPE pieces that split characters).
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>> {
        match self {
            TextCodec::Bytes => Ok(ids.iter().map(|&t| t as u8).collect()),
            TextCodec::Bpe(t) => Ok(t
                .decode(ids, false)
                .map_err(|e| Error::Invalid(format!("tokenizer: {e}")))?
                .into_bytes()),
        }
    }
}

/// Read a whole text file.
pub fn read_text(path: &Path) -> Result<String> {
    let b = std::fs::read(path).map_err(io_err(path))?;
    String::from_utf8(b).map_err(|e| format_err(path, format!("not UTF-8: {e}")))
}

/// Rebuild a tokenizer.json (GPT-2 byte-level BPE) from GGUF metadata.
fn gguf_tokenizer_json(model: &LoadedModel) -> Result<String> {
    let g = model.gguf();
    let kind = g.get_str("tokenizer.ggml.model").map_err(|_| {
        Error::Invalid(format!(
            "{}: the model has no tokenizer metadata and no tokenizer.json beside it",
            model.source
        ))
    })?;
    if kind != "gpt2" {
        return Err(Error::Invalid(format!(
            "{}: tokenizer model '{kind}' is not supported (gpt2 BPE is)",
            model.source
        )));
    }
    let Some(Value::Array(tokens)) = g.get("tokenizer.ggml.tokens") else {
        return Err(Error::Invalid(format!(
            "{}: tokenizer.ggml.tokens missing",
            model.source
        )));
    };
    let types = match g.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => Some(a),
        _ => None,
    };
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, t) in tokens.strings().enumerate() {
        vocab.insert(t.to_string(), serde_json::Value::from(i as u64));
        let ty = types.and_then(|a| a.get_int(i as u64)).unwrap_or(1);
        if ty == 3 {
            added.push(
                serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true}),
            );
        }
    }
    let merges: Vec<String> = match g.get("tokenizer.ggml.merges") {
        Some(Value::Array(a)) => a.strings().map(String::from).collect(),
        _ => Vec::new(),
    };
    let j = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges}
    });
    Ok(j.to_string())
}
