//! `gram devices` (being written).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> gram::Result<()> {
    Err(gram::Error::invalid("`gram devices` is not built yet"))
}
