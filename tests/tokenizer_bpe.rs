//! BPE models: the tokenizer comes from the tokenizer.json beside a HF folder, and
//! `mamba-cli convert` carries it into the GGUF's `tokenizer.ggml.*` metadata, from which
//! a GGUF alone is tokenized the same way.

mod common;

use common::*;
use mamba_rt::LoadedModel;
use mamba_rt::tokenizer::TextCodec;
use std::path::Path;
use std::process::Command;

/// GPT-2's byte -> printable char map.
fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut out = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        out[*b as usize] = char::from_u32(c).unwrap();
    }
    out
}

/// A small byte-level BPE tokenizer.json: 256 byte tokens, 5 merges, one special token.
fn write_tokenizer(dir: &Path) {
    let map = bytes_to_unicode();
    let mut vocab = serde_json::Map::new();
    for (i, c) in map.iter().enumerate() {
        vocab.insert(c.to_string(), serde_json::json!(i));
    }
    let merges = ["h e", "Ġ t", "Ġt he", "i n", "Ġ a"];
    for (i, m) in merges.iter().enumerate() {
        vocab.insert(m.replace(' ', ""), serde_json::json!(256 + i));
    }
    let j = serde_json::json!({
        "version": "1.0",
        "added_tokens": [{"id": 261, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": merges}
    });
    std::fs::write(dir.join("tokenizer.json"), j.to_string()).unwrap();
}

#[test]
fn tokenizer_json_and_gguf_metadata_agree() {
    let src = repo().join("tests/fixtures/conformance/sharded");
    let dir = temp_dir("bpe-hf");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    write_tokenizer(&dir);
    let text = "in the hat, the cat sat in a hut";

    let hf = LoadedModel::open(&dir).unwrap();
    assert!(!hf.is_byte_level());
    let c1 = TextCodec::for_model(&hf, &dir).unwrap();
    let ids = c1.encode(text).unwrap();
    // "in" (259), " the" (258) and " a" (260) are merged tokens.
    assert!(
        ids.contains(&258) && ids.contains(&259) && ids.contains(&260),
        "{ids:?}"
    );
    assert!(ids.len() < text.len());
    assert_eq!(c1.decode(&ids).unwrap(), text.as_bytes());

    // Converted to GGUF in a folder without tokenizer.json: the metadata alone.
    let out_dir = temp_dir("bpe-gguf");
    let gguf = out_dir.join("m.gguf");
    let st = Command::new(env!("CARGO_BIN_EXE_mamba-cli"))
        .args([
            "convert",
            dir.to_str().unwrap(),
            "-o",
            gguf.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let m = LoadedModel::open(&gguf).unwrap();
    let g = m.gguf();
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_uint("tokenizer.ggml.bos_token_id").unwrap(), 261);
    let c2 = TextCodec::for_model(&m, &gguf).unwrap();
    assert_eq!(c2.encode(text).unwrap(), ids);
    assert_eq!(c2.decode(&ids).unwrap(), text.as_bytes());

    // generate runs on the BPE model and streams decoded text.
    let out = Command::new(env!("CARGO_BIN_EXE_mamba-cli"))
        .args([
            "generate",
            "in the",
            "--model",
            gguf.to_str().unwrap(),
            "--max-tokens",
            "12",
            "--seed",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with("in the") && s.len() > "in the".len(), "{s:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("12 generated"));
}
