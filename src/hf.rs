//! Hugging Face checkpoint folders (config.json + safetensors, single or sharded) turned
//! into a `mamba` GGUF: the tensor names and metadata keys llama.cpp uses, A stored as
//! -exp(A_log), the conv squeezed to {K, E}. Loading a folder goes through the same
//! bytes, so a folder and its converted file run the same code.

use crate::error::{Result, format_err, io_err};
use crate::gguf_write::{GgufWriter, MetaValue, add_f32, add_matrix, write_mamba_metadata};
use crate::safetensors::SafeTensors;
use mamba_core::DType;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A HF checkpoint folder, opened.
pub struct HfCheckpoint {
    dir: PathBuf,
    config: Value,
    shards: Vec<SafeTensors>,
    /// tensor name -> shard index
    index: HashMap<String, usize>,
}

fn cfg_u64(c: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| c.get(*k).and_then(|v| v.as_u64()))
}

impl HfCheckpoint {
    /// Open `dir`: config.json plus model.safetensors or a sharded index.
    pub fn open(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
        let config: Value = serde_json::from_str(&text)
            .map_err(|e| format_err(&cfg_path, format!("not valid JSON: {e}")))?;
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        if single.exists() {
            let st = SafeTensors::open(&single)?;
            for k in st.tensors.keys() {
                index.insert(k.clone(), 0);
            }
            shards.push(st);
        } else if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(io_err(&index_path))?;
            let idx: Value = serde_json::from_str(&text)
                .map_err(|e| format_err(&index_path, format!("not valid JSON: {e}")))?;
            let map = idx
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| format_err(&index_path, "no weight_map object"))?;
            let mut files: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            files.sort();
            files.dedup();
            for f in &files {
                if f.contains('/') || f.contains("..") {
                    return Err(format_err(
                        &index_path,
                        format!("shard name '{f}' leaves the folder"),
                    ));
                }
                let st = SafeTensors::open(&dir.join(f))?;
                let si = shards.len();
                for k in st.tensors.keys() {
                    index.insert(k.clone(), si);
                }
                shards.push(st);
            }
            for (name, f) in map {
                let f = f.as_str().unwrap_or_default();
                let si = index.get(name).copied();
                if si.is_none_or(|i| shards[i].path.file_name().and_then(|n| n.to_str()) != Some(f))
                {
                    return Err(format_err(
                        &index_path,
                        format!("tensor '{name}' is not in shard {f}"),
                    ));
                }
            }
        } else {
            return Err(format_err(
                dir,
                "no model.safetensors or model.safetensors.index.json in this folder",
            ));
        }
        Ok(HfCheckpoint {
            dir: dir.to_path_buf(),
            config,
            shards,
            index,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn get(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let si = self
            .index
            .get(name)
            .ok_or_else(|| format_err(&self.dir, format!("missing tensor '{name}'")))?;
        self.shards[*si].to_f32(name)
    }

    fn get_shaped(&self, name: &str, want: &[usize]) -> Result<Vec<f32>> {
        let (v, shape) = self.get(name)?;
        // Squeeze singleton dims (the conv weight is (E, 1, K)).
        let sq: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
        let wq: Vec<usize> = want.iter().copied().filter(|&d| d != 1).collect();
        if sq != wq {
            return Err(format_err(
                &self.dir,
                format!("tensor '{name}' has shape {shape:?}, expected {want:?}"),
            ));
        }
        Ok(v)
    }

    /// Convert to a GGUF writer; 2-D projections and the embedding are stored as `dtype`
    /// (rows not a multiple of 32 fall back to F16 for quantized types).
    pub fn to_gguf(&self, dtype: DType) -> Result<GgufWriter> {
        let c = &self.config;
        let ssm = c.get("ssm_cfg").cloned().unwrap_or(Value::Null);
        let emb_name = ["backbone.embeddings.weight", "backbone.embedding.weight"]
            .into_iter()
            .find(|n| self.has(n))
            .ok_or_else(|| format_err(&self.dir, "missing tensor 'backbone.embeddings.weight'"))?;
        let (_, emb_shape) = self.get(emb_name)?;
        if emb_shape.len() != 2 {
            return Err(format_err(
                &self.dir,
                format!("embedding has shape {emb_shape:?}, expected (V, D)"),
            ));
        }
        let (v, d) = (emb_shape[0], emb_shape[1]);
        let mut n_layer = 0;
        while self.has(&format!("backbone.layers.{n_layer}.mixer.in_proj.weight")) {
            n_layer += 1;
        }
        if n_layer == 0 {
            return Err(format_err(
                &self.dir,
                "no layers (missing 'backbone.layers.0.mixer.in_proj.weight')",
            ));
        }
        let l0 = |s: &str| format!("backbone.layers.0.mixer.{s}");
        let shape_of = |n: &str| -> Result<Vec<usize>> { Ok(self.get(n)?.1) };
        let in_shape = shape_of(&l0("in_proj.weight"))?;
        let e = match in_shape.as_slice() {
            [rows, _] if *rows > 0 && rows % 2 == 0 => rows / 2,
            _ => {
                return Err(format_err(
                    &self.dir,
                    format!("in_proj.weight has shape {in_shape:?}, expected (2 * E, D)"),
                ));
            }
        };
        let a_shape = shape_of(&l0("A_log"))?;
        let n = *a_shape.last().unwrap_or(&0);
        let conv_shape = shape_of(&l0("conv1d.weight"))?;
        let k = *conv_shape.last().unwrap_or(&0);
        let dt_shape = shape_of(&l0("dt_proj.weight"))?;
        let r = *dt_shape.last().unwrap_or(&0);
        // Cross-check the config against the tensors, so a wrong config is named.
        let checks: [(&[&str], usize); 5] = [
            (&["hidden_size", "d_model"], d),
            (&["num_hidden_layers", "n_layer"], n_layer),
            (&["intermediate_size"], e),
            (&["state_size"], n),
            (&["conv_kernel"], k),
        ];
        for (keys, actual) in checks {
            if let Some(want) = cfg_u64(c, keys) {
                if want as usize != actual {
                    return Err(format_err(
                        self.dir.join("config.json"),
                        format!("{} = {want} but the tensors say {actual}", keys[0]),
                    ));
                }
            }
        }
        for (key, actual) in [("d_state", n), ("d_conv", k)] {
            if let Some(want) = ssm.get(key).and_then(|x| x.as_u64()) {
                if want as usize != actual {
                    return Err(format_err(
                        self.dir.join("config.json"),
                        format!("ssm_cfg.{key} = {want} but the tensors say {actual}"),
                    ));
                }
            }
        }
        if let Some(tr) = c.get("time_step_rank").and_then(|x| x.as_u64()) {
            if tr as usize != r {
                return Err(format_err(
                    self.dir.join("config.json"),
                    format!("time_step_rank = {tr} but dt_proj has {r} columns"),
                ));
            }
        }
        let eps = c
            .get("layer_norm_epsilon")
            .or_else(|| c.get("norm_epsilon"))
            .and_then(|x| x.as_f64())
            .unwrap_or(1e-5) as f32;
        let tie_cfg = c
            .get("tie_word_embeddings")
            .or_else(|| c.get("tie_embeddings"))
            .and_then(|x| x.as_bool())
            .unwrap_or(true);
        let tied = tie_cfg || !self.has("lm_head.weight");
        let dt_b_c_rms = c.get("model_type").and_then(|x| x.as_str()) == Some("falcon_mamba");
        let in_bias = self.has(&l0("in_proj.bias"));
        let out_bias = self.has(&l0("out_proj.bias"));
        let conv_bias = self.has(&l0("conv1d.bias"));

        let mut w = GgufWriter::new();
        let name = self
            .dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("mamba")
            .to_string();
        let cfg = mamba_core::ModelConfig {
            d_model: d,
            n_layer,
            d_inner: e,
            d_state: n,
            d_conv: k,
            dt_rank: r,
            vocab_size: v,
            eps,
            in_proj_bias: in_bias,
            out_proj_bias: out_bias,
            conv_bias: true,
            tied_head: tied,
            dt_b_c_rms,
        };
        write_mamba_metadata(&mut w, &cfg, &name, dtype);
        let tok = self.dir.join("tokenizer.json");
        if tok.exists() {
            for (key, val) in tokenizer_metadata(&tok, v)? {
                w.kv(&key, val);
            }
        }

        let mat = |w: &mut GgufWriter, gname: String, vals: Vec<f32>, rows: usize, cols: usize| {
            add_matrix(w, gname, &vals, rows, cols, dtype)
        };
        let vec32 = |w: &mut GgufWriter, gname: String, vals: Vec<f32>, dims: Vec<u64>| {
            add_f32(w, gname, &vals, dims)
        };
        mat(
            &mut w,
            "token_embd.weight".into(),
            self.get_shaped(emb_name, &[v, d])?,
            v,
            d,
        );
        vec32(
            &mut w,
            "output_norm.weight".into(),
            self.get_shaped("backbone.norm_f.weight", &[d])?,
            vec![d as u64],
        );
        if !tied {
            mat(
                &mut w,
                "output.weight".into(),
                self.get_shaped("lm_head.weight", &[v, d])?,
                v,
                d,
            );
        }
        for i in 0..n_layer {
            let hf = |s: &str| format!("backbone.layers.{i}.mixer.{s}");
            let gg = |s: &str| format!("blk.{i}.{s}");
            vec32(
                &mut w,
                gg("attn_norm.weight"),
                self.get_shaped(&format!("backbone.layers.{i}.norm.weight"), &[d])?,
                vec![d as u64],
            );
            mat(
                &mut w,
                gg("ssm_in.weight"),
                self.get_shaped(&hf("in_proj.weight"), &[2 * e, d])?,
                2 * e,
                d,
            );
            if in_bias {
                vec32(
                    &mut w,
                    gg("ssm_in.bias"),
                    self.get_shaped(&hf("in_proj.bias"), &[2 * e])?,
                    vec![2 * e as u64],
                );
            }
            vec32(
                &mut w,
                gg("ssm_conv1d.weight"),
                self.get_shaped(&hf("conv1d.weight"), &[e, 1, k])?,
                vec![k as u64, e as u64],
            );
            // llama.cpp's loader requires a conv bias: a checkpoint without one
            // (use_conv_bias = false) gets zeros, which compute the same thing.
            let conv_b = if conv_bias {
                self.get_shaped(&hf("conv1d.bias"), &[e])?
            } else {
                vec![0.0; e]
            };
            vec32(&mut w, gg("ssm_conv1d.bias"), conv_b, vec![e as u64]);
            mat(
                &mut w,
                gg("ssm_x.weight"),
                self.get_shaped(&hf("x_proj.weight"), &[r + 2 * n, e])?,
                r + 2 * n,
                e,
            );
            mat(
                &mut w,
                gg("ssm_dt.weight"),
                self.get_shaped(&hf("dt_proj.weight"), &[e, r])?,
                e,
                r,
            );
            vec32(
                &mut w,
                gg("ssm_dt.bias"),
                self.get_shaped(&hf("dt_proj.bias"), &[e])?,
                vec![e as u64],
            );
            let a: Vec<f32> = self
                .get_shaped(&hf("A_log"), &[e, n])?
                .iter()
                .map(|x| -(x.exp()))
                .collect();
            vec32(&mut w, gg("ssm_a"), a, vec![n as u64, e as u64]);
            vec32(
                &mut w,
                gg("ssm_d"),
                self.get_shaped(&hf("D"), &[e])?,
                vec![e as u64],
            );
            mat(
                &mut w,
                gg("ssm_out.weight"),
                self.get_shaped(&hf("out_proj.weight"), &[d, e])?,
                d,
                e,
            );
            if out_bias {
                vec32(
                    &mut w,
                    gg("ssm_out.bias"),
                    self.get_shaped(&hf("out_proj.bias"), &[d])?,
                    vec![d as u64],
                );
            }
        }
        Ok(w)
    }
}

/// GGUF tokenizer metadata (llama.cpp's gpt2 BPE keys) from a HF tokenizer.json.
pub fn tokenizer_metadata(path: &Path, vocab_size: usize) -> Result<Vec<(String, MetaValue)>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let j: Value = serde_json::from_str(&text)
        .map_err(|e| format_err(path, format!("not valid JSON: {e}")))?;
    let model = j
        .get("model")
        .ok_or_else(|| format_err(path, "no 'model' object"))?;
    let typ = model.get("type").and_then(|t| t.as_str()).unwrap_or("BPE");
    if typ != "BPE" {
        return Err(format_err(
            path,
            format!("tokenizer model type {typ} is not supported (BPE is)"),
        ));
    }
    let vocab = model
        .get("vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| format_err(path, "no model.vocab"))?;
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![1i32; vocab_size];
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| format_err(path, "vocab id is not an integer"))?
            as usize;
        if id < vocab_size {
            tokens[id] = Some(tok.clone());
        }
    }
    let mut bos = None;
    if let Some(added) = j.get("added_tokens").and_then(|a| a.as_array()) {
        for t in added {
            let (Some(id), Some(content)) = (
                t.get("id").and_then(|x| x.as_u64()),
                t.get("content").and_then(|x| x.as_str()),
            ) else {
                continue;
            };
            let id = id as usize;
            if id < vocab_size {
                tokens[id] = Some(content.to_string());
                let special = t.get("special").and_then(|x| x.as_bool()).unwrap_or(false);
                types[id] = if special { 3 } else { 4 };
                if content == "<|endoftext|>" {
                    bos = Some(id as u32);
                }
            }
        }
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = 5;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges: Vec<String> = model
        .get("merges")
        .and_then(|m| m.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| match m {
                    Value::String(s) => Some(s.clone()),
                    Value::Array(p) if p.len() == 2 => {
                        Some(format!("{} {}", p[0].as_str()?, p[1].as_str()?))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![
        (
            "tokenizer.ggml.model".to_string(),
            MetaValue::Str("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".to_string(),
            MetaValue::Str("gpt-2".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            MetaValue::StrArray(tokens),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            MetaValue::I32Array(types),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            MetaValue::StrArray(merges),
        ),
    ];
    if let Some(b) = bos {
        for k in ["bos", "eos", "unknown", "padding"] {
            out.push((format!("tokenizer.ggml.{k}_token_id"), MetaValue::U32(b)));
        }
    }
    Ok(out)
}
