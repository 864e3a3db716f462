use mamba_rt::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_a: Args) -> Result<()> {
    Err(Error::Invalid("not written yet".into()))
}
