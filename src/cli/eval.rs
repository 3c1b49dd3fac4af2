//! `gram eval` (being written).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> gram::Result<()> {
    Err(gram::Error::invalid("`gram eval` is not built yet"))
}
