//! `gram judge` (being written).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> gram::Result<()> {
    Err(gram::Error::invalid("`gram judge` is not built yet"))
}
