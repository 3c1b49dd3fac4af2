//! `gram devices`: the wgpu adapters this machine has, and the CPU.

use gram::device;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> gram::Result<()> {
    let adapters = device::adapters();
    if adapters.is_empty() {
        println!("no wgpu adapters (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)");
    }
    for a in &adapters {
        println!(
            "{:>3}  {:<40} {:<8} {:<14} {}",
            a.index,
            a.name,
            format!("{:?}", a.api),
            format!("{:?}", a.device_type),
            a.driver
        );
    }
    println!("cpu  burn flex (pure Rust, multi-threaded)");
    println!("\nPick one with --device auto|vulkan|metal|dx12|<index>|cpu");
    Ok(())
}
