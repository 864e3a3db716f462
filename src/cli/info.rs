use mamba_rt::{LoadedModel, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file or HF checkpoint folder.
    pub model: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let m = LoadedModel::open(&a.model)?;
    let c = m.config();
    let g = m.gguf();
    println!("model:       {}", m.source);
    println!(
        "format:      GGUF v{} ({} tensors, {} metadata keys)",
        g.version, g.n_tensors, g.n_kv
    );
    if let Ok(n) = g.get_str("general.name") {
        println!("name:        {n}");
    }
    println!("d_model:     {}", c.d_model);
    println!("n_layer:     {}", c.n_layer);
    println!("d_inner:     {}", c.d_inner);
    println!("d_state:     {}", c.d_state);
    println!("d_conv:      {}", c.d_conv);
    println!("dt_rank:     {}", c.dt_rank);
    println!("vocab:       {}", c.vocab_size);
    println!("rms eps:     {:e}", c.eps);
    println!(
        "options:     in_proj bias {}, out_proj bias {}, conv bias {}, head {}, dt/B/C rms {}",
        c.in_proj_bias,
        c.out_proj_bias,
        c.conv_bias,
        if c.tied_head { "tied" } else { "untied" },
        c.dt_b_c_rms
    );
    let mut by_type: BTreeMap<String, (usize, u64, usize)> = BTreeMap::new();
    let mut params = 0u64;
    for t in g.tensors().flatten() {
        let e = by_type
            .entry(
                t.dtype()
                    .map(|d| d.name().to_string())
                    .unwrap_or(format!("type{}", t.type_code)),
            )
            .or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.nbytes;
        params += t.n_elements();
    }
    println!("parameters:  {params} ({:.2} M)", params as f64 / 1e6);
    for (ty, (n, el, by)) in by_type {
        println!(
            "  {ty:<6} {n:>4} tensors, {el:>12} values, {:>10.2} MiB",
            by as f64 / 1048576.0
        );
    }
    println!("file bytes:  {:.2} MiB", m.bytes().len() as f64 / 1048576.0);
    println!(
        "state:       {:.3} MiB per stream ({} f32)",
        c.state_len() as f64 * 4.0 / 1048576.0,
        c.state_len()
    );
    let tok = if m.is_byte_level() {
        "bytes (vocabulary = the 256 byte values)".to_string()
    } else {
        g.get_str("tokenizer.ggml.model")
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "none".into())
    };
    println!("tokenizer:   {tok}");
    Ok(())
}
