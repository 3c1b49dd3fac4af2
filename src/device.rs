//! Choosing the compute device: a wgpu adapter (Vulkan, Metal, DX12) or the CPU.
//!
//! `auto` takes wgpu's best adapter (a discrete GPU before an integrated one before a software
//! rasterizer such as lavapipe). `cpu` is burn's pure-Rust `flex` backend, for machines without
//! a GPU or where the only Vulkan driver is a slow software one.

use crate::{Error, Result};
use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// One wgpu adapter as the system reports it.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Position in [`adapters`]'s list; `--device N` picks it.
    pub index: usize,
    pub name: String,
    /// Vulkan, Metal, Dx12, Gl, ...
    pub api: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
}

/// Every adapter wgpu can see on Vulkan, Metal and DX12, in wgpu's order.
pub fn adapters() -> Vec<Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let found =
        pollster::block_on(instance.enumerate_adapters(
            wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
        ));
    found
        .iter()
        .enumerate()
        .map(|(index, adapter)| {
            let info = adapter.get_info();
            Adapter {
                index,
                name: info.name,
                api: info.backend,
                device_type: info.device_type,
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
            }
        })
        .collect()
}

/// How to get a GPU device when none is found.
const NO_ADAPTER_HELP: &str = "no GPU adapter found through wgpu. Install a Vulkan driver \
(on Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`; the software driver \
lavapipe works everywhere but is slow), or run on the CPU with `--device cpu`";

/// Parse a device name: `auto`, `vulkan`, `metal`, `dx12`, an adapter index from
/// `gram devices`, or `cpu`.
///
/// A wgpu runtime is initialised once per process; selecting the same name again returns the
/// same device.
pub fn select(name: &str) -> Result<Device> {
    static SELECTED: OnceLock<Mutex<HashMap<String, Device>>> = OnceLock::new();
    let name = name.trim().to_ascii_lowercase();
    let selected = SELECTED.get_or_init(Default::default);
    if let Some(device) = selected
        .lock()
        .map_err(|_| Error::Device("device table poisoned".into()))?
        .get(&name)
    {
        return Ok(device.clone());
    }
    let device = initialise(&name)?;
    if let Ok(mut table) = selected.lock() {
        table.insert(name, device.clone());
    }
    Ok(device)
}

/// Parse a comma-separated device list (`--devices 0,1`, `vulkan:0,cpu`, `cpu,cpu`): each entry
/// as [`select`] reads it, where `API:N` is the N-th adapter of that graphics API in
/// `gram devices`' list. An entry may repeat: `cpu,cpu` is two replicas on one device.
pub fn select_list(list: &str) -> Result<Vec<Device>> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    if entries.iter().any(|entry| entry.is_empty()) {
        return Err(Error::Device(format!(
            "`{list}`: expected a comma-separated list of devices, e.g. `0,1` or `cpu,cpu`"
        )));
    }
    entries.into_iter().map(select_entry).collect()
}

/// One `--devices` entry: `API:N`, or anything [`select`] takes.
fn select_entry(entry: &str) -> Result<Device> {
    let Some((api, nth)) = entry.split_once(':') else {
        return select(entry);
    };
    let api = api.trim().to_ascii_lowercase();
    let nth: usize = nth
        .trim()
        .parse()
        .map_err(|_| Error::Device(format!("`{entry}`: expected API:N, e.g. vulkan:0")))?;
    let all = adapters();
    let index = all
        .iter()
        .filter(|a| format!("{:?}", a.api).to_ascii_lowercase() == api)
        .nth(nth)
        .map(|a| a.index)
        .ok_or_else(|| {
            Error::Device(format!(
                "`{entry}`: there is no {api} adapter number {nth} (`gram devices` lists them)"
            ))
        })?;
    select(&index.to_string())
}

/// On glibc, keeps the memory of freed tensors for the next ones instead of returning it to the
/// system: allocations up to 32 MiB (the most `mallopt` accepts) come from the heap rather than
/// from a fresh `mmap` each, and the heap is not trimmed. By default glibc maps most of a pass's
/// tensors anew and unmaps them when freed, so every pass pays page faults, zeroing and TLB
/// flushes again. On the 2-core CI machine this made stage-2 training 6–17% faster
/// (`train_bench --stage 2 --pairs 8 --no-torch`: 388 and 409 against 366 and 350 tokens/s,
/// alternating) for 0.01 GB more peak memory. Process-wide, done once, when `cpu` is first
/// chosen; other C libraries are left as they are.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: `mallopt` only sets allocator parameters; both values are in range.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        });
    }
}

fn initialise(name: &str) -> Result<Device> {
    let options = Device::wgpu_options();
    let options = match name {
        "cpu" | "flex" => {
            keep_freed_memory();
            return Ok(Device::flex());
        }
        "auto" | "gpu" | "wgpu" => options,
        "vulkan" => options.graphics_api(WgpuBackend::Vulkan),
        "metal" => options.graphics_api(WgpuBackend::Metal),
        "dx12" => options.graphics_api(WgpuBackend::Dx12),
        other => {
            let index: usize = other.parse().map_err(|_| {
                Error::Device(format!(
                    "unknown device `{other}`: use auto, vulkan, metal, dx12, cpu, or an adapter \
                     index from `gram devices`"
                ))
            })?;
            let all = adapters();
            let adapter = all.get(index).ok_or_else(|| {
                Error::Device(format!(
                    "no adapter {index}: `gram devices` lists {} adapter(s)",
                    all.len()
                ))
            })?;
            // cubecl numbers adapters per type and graphics API; find this one's ordinal.
            let ordinal = all[..index]
                .iter()
                .filter(|a| a.api == adapter.api && a.device_type == adapter.device_type)
                .count();
            let kind = match adapter.device_type {
                wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(ordinal),
                wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(ordinal),
                wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(ordinal),
                _ => DeviceKind::Cpu,
            };
            let api = match adapter.api {
                wgpu::Backend::Metal => WgpuBackend::Metal,
                wgpu::Backend::Dx12 => WgpuBackend::Dx12,
                _ => WgpuBackend::Vulkan,
            };
            options.graphics_api(api).device_kind(kind)
        }
    };
    if adapters().is_empty() {
        return Err(Error::Device(NO_ADAPTER_HELP.into()));
    }
    match options.init() {
        Ok(device) => Ok(device),
        // Something else in this process (e.g. `Device::wgpu(..)` in user code) already started
        // the default runtime: use it.
        Err(e)
            if matches!(name, "auto" | "gpu" | "wgpu")
                && e.to_string().contains("already initialized") =>
        {
            Ok(Device::wgpu(DeviceKind::DefaultDevice))
        }
        Err(e) => Err(Error::Device(format!("{e}; {NO_ADAPTER_HELP}"))),
    }
}

/// A one-line description of a device, for logs.
pub fn describe(device: &Device) -> String {
    if *device == Device::flex() {
        return match crate::matmul::blas::name() {
            Some(blas) => {
                let kernels = crate::matmul::blas::kernels().map(|k| format!(", {k} kernels"));
                let kernels = kernels.unwrap_or_default();
                format!("cpu (burn flex; f32 products through {blas}{kernels})")
            }
            None => "cpu (burn flex, pure Rust)".into(),
        };
    }
    match device.identity() {
        Some(identity) => format!("wgpu: {identity:?}"),
        None => format!("{device:?}"),
    }
}
