//! Loading a model from disk or memory: a GGUF file (mapped, zero-copy), a GGUF in
//! memory, or a HF checkpoint folder (converted to GGUF bytes in memory first).

use crate::aligned::AlignedBytes;
use crate::error::{Error, Result, io_err};
use crate::hf::HfCheckpoint;
use mamba_core::{DType, Gguf, LayerWeights, Model, ModelLayout};
use std::path::Path;

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(AlignedBytes),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(b) => b.as_slice(),
        }
    }
}

/// A model that owns its bytes. Immutable after loading; share it between threads
/// with `Arc` and give each stream its own [`crate::Session`].
pub struct LoadedModel {
    storage: Storage,
    layout: ModelLayout,
    layers: Vec<LayerWeights>,
    /// Where it came from (path or "memory").
    pub source: String,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedModel({}, {:?})", self.source, self.layout.config)
    }
}

impl LoadedModel {
    /// Open a GGUF file or a HF checkpoint folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        if meta.is_dir() {
            let ck = HfCheckpoint::open(path)?;
            let bytes = ck.to_gguf(DType::F32)?.to_bytes();
            return Self::build(Storage::Owned(bytes), path.display().to_string());
        }
        let f = std::fs::File::open(path).map_err(io_err(path))?;
        // SAFETY: read-only mapping; the model file must not be modified while loaded
        // (the same contract as llama.cpp's mmap loading).
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io_err(path))?;
        Self::build(Storage::Mapped(map), path.display().to_string()).map_err(|e| match e {
            Error::Core(c) => Error::Format {
                path: path.to_path_buf(),
                msg: c.to_string(),
            },
            other => other,
        })
    }

    /// Load a GGUF held in memory (copied into an aligned buffer).
    pub fn from_gguf_bytes(bytes: &[u8]) -> Result<Self> {
        Self::build(
            Storage::Owned(AlignedBytes::from_slice(bytes)),
            "memory".into(),
        )
    }

    /// Load from an aligned GGUF buffer without copying.
    pub fn from_aligned(bytes: AlignedBytes) -> Result<Self> {
        Self::build(Storage::Owned(bytes), "memory".into())
    }

    fn build(storage: Storage, source: String) -> Result<Self> {
        let bytes = storage.bytes();
        let g = Gguf::parse(bytes)?;
        let n_layer = mamba_core::weights::config_from_gguf(&g)?.n_layer;
        let mut layers = vec![LayerWeights::EMPTY; n_layer];
        let layout = ModelLayout::from_gguf(&g, &mut layers)?;
        let m = LoadedModel {
            storage,
            layout,
            layers,
            source,
        };
        m.view_checked()?;
        Ok(m)
    }

    fn view_checked(&self) -> Result<Model<'_>> {
        Ok(Model::new(
            self.storage.bytes(),
            &self.layout,
            &self.layers,
        )?)
    }

    /// The model view used by the step functions.
    pub fn view(&self) -> Model<'_> {
        // Checked once in build(); the same bytes, layout and layers give the same answer.
        match self.view_checked() {
            Ok(m) => m,
            Err(e) => unreachable!("model view validated at load: {e}"),
        }
    }

    /// The config.
    pub fn config(&self) -> &mamba_core::ModelConfig {
        &self.layout.config
    }

    /// The parsed GGUF (metadata, tensor table).
    pub fn gguf(&self) -> Gguf<'_> {
        match Gguf::parse(self.storage.bytes()) {
            Ok(g) => g,
            Err(e) => unreachable!("parsed at load: {e}"),
        }
    }

    /// The raw GGUF bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// True for a byte-level model (no tokenizer metadata and at most 256 tokens).
    pub fn is_byte_level(&self) -> bool {
        self.gguf().get("tokenizer.ggml.tokens").is_none() && self.config().vocab_size <= 256
    }
}
