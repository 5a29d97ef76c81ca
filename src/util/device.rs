//! Choosing where tensors live: a wgpu adapter (Vulkan, Metal, DX12, GL) or Burn's CPU backend;
//! reading tensors back without blocking (the only way a browser's GPU allows).

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::thread::LocalKey;

use anyhow::{Result, bail};
use burn::tensor::{Device, DeviceKind, Tensor};
use serde::Serialize;

/// What `--device` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The best hardware GPU, else the CPU backend. Never a software rasteriser.
    Auto,
    /// Burn's pure-Rust CPU backend (flex).
    Cpu,
    /// A wgpu adapter by its index in [`adapters`].
    Index(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => other.parse().map(DeviceChoice::Index).map_err(|_| {
                format!(
                    "expected auto, cpu or an adapter index from `pac-wgpu devices`, found {s:?}"
                )
            }),
        }
    }
}

/// run.json's `"device"`: `auto`, `cpu` or an adapter index, as the flag spells it.
impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Index(i) => write!(f, "{i}"),
        }
    }
}

/// One wgpu adapter as `pac-wgpu devices` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub index: usize,
    pub name: String,
    pub backend: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub driver: String,
    #[serde(skip)]
    device_type: wgpu::DeviceType,
}

impl AdapterInfo {
    fn is_hardware(&self) -> bool {
        matches!(
            self.device_type,
            wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
        )
    }
}

/// The adapters of the graphics API Burn's wgpu backend settles on (the first of Vulkan, DX12,
/// GL — Metal on macOS — with a GPU, else the first with any adapter), in the order Burn
/// counts them. Enumerated once per process.
pub fn adapters() -> &'static [AdapterInfo] {
    static ADAPTERS: OnceLock<Vec<AdapterInfo>> = OnceLock::new();
    ADAPTERS.get_or_init(|| {
        let candidates: &[wgpu::Backend] = if cfg!(target_os = "macos") {
            &[wgpu::Backend::Metal]
        } else {
            &[
                wgpu::Backend::Vulkan,
                wgpu::Backend::Dx12,
                wgpu::Backend::Gl,
            ]
        };
        let mut software_only = Vec::new();
        for &backend in candidates {
            let found = enumerate(backend);
            if found.iter().any(|a| a.device_type != wgpu::DeviceType::Cpu) {
                return found;
            }
            if software_only.is_empty() {
                software_only = found;
            }
        }
        software_only
    })
}

fn enumerate(backend: wgpu::Backend) -> Vec<AdapterInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let found = pollster::block_on(instance.enumerate_adapters(backend.into()));
    // The Vulkan loader misbehaves when instances come and go while Burn creates its own:
    // keep this one for the life of the process.
    std::mem::forget(instance);
    found
        .iter()
        .map(|a| a.get_info())
        .enumerate()
        .map(|(index, info)| AdapterInfo {
            index,
            name: info.name,
            backend: format!("{:?}", info.backend),
            kind: match info.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete",
                wgpu::DeviceType::IntegratedGpu => "integrated",
                wgpu::DeviceType::VirtualGpu => "virtual",
                wgpu::DeviceType::Cpu => "cpu",
                wgpu::DeviceType::Other => "other",
            }
            .to_string(),
            driver: [info.driver, info.driver_info]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            device_type: info.device_type,
        })
        .collect()
}

/// What `auto` resolves to: the first discrete GPU, else the first integrated one, else `cpu`.
pub fn auto_choice() -> DeviceChoice {
    let list = adapters();
    let first = |t: wgpu::DeviceType| list.iter().find(|a| a.device_type == t);
    first(wgpu::DeviceType::DiscreteGpu)
        .or_else(|| first(wgpu::DeviceType::IntegratedGpu))
        .filter(|a| a.is_hardware())
        .map_or(DeviceChoice::Cpu, |a| DeviceChoice::Index(a.index))
}

/// A Burn device plus a human-readable name for logs and run files.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    pub name: String,
}

/// Whether `device` is Burn's CPU backend (flex), with or without autodiff.
pub fn is_cpu(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// Makes glibc's allocator keep freed memory for the next tensor instead of handing it back to
/// the kernel: the CPU device allocates every intermediate afresh, and with glibc's defaults
/// each large one costs page faults and zeroed pages again (9× fewer faults and ~7 % less CPU
/// time per MiniLM step; peak memory is unchanged, it is just not returned early). For
/// binaries, once at start; a no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; these are within glibc's accepted ranges
    // (the mmap threshold at its 64-bit maximum of 32 MiB).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// Whether every compute thread of the CPU device flushes subnormal floats to zero (see
/// docs/benchmarks.md); `None` on processors where this build cannot tell.
pub fn cpu_flushes_subnormals() -> Option<bool> {
    crate::util::kernel::flush::every_compute_thread_flushes()
}

/// Resolves `--device` to a Burn device, checking first that the adapter exists so that a
/// machine without one gets an error that says what to do, not a panic inside wgpu.
pub fn select(choice: DeviceChoice) -> Result<SelectedDevice> {
    let choice = match choice {
        DeviceChoice::Auto => auto_choice(),
        other => other,
    };
    let index = match choice {
        DeviceChoice::Cpu | DeviceChoice::Auto => {
            crate::util::kernel::flush::cpu_device();
            return Ok(SelectedDevice {
                device: Device::flex(),
                name: "cpu (Burn flex backend)".into(),
            });
        }
        DeviceChoice::Index(i) => i,
    };
    let list = adapters();
    if list.is_empty() {
        bail!(
            "--device {index}: no wgpu adapter found; install a Vulkan driver (on Debian: apt-get install mesa-vulkan-drivers libvulkan1) or pass --device cpu"
        );
    }
    let Some(adapter) = list.get(index) else {
        bail!(
            "--device {index}: no such adapter (this machine has {}: indices 0..{}; see `pac-wgpu devices`), or pass --device cpu",
            list.len(),
            list.len() - 1
        );
    };
    // Burn counts adapters per type, in enumeration order.
    let same_type_before = list[..index]
        .iter()
        .filter(|a| a.device_type == adapter.device_type)
        .count();
    let kind = match adapter.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(same_type_before),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(same_type_before),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(same_type_before),
        wgpu::DeviceType::Cpu if same_type_before == 0 => DeviceKind::Cpu,
        _ => bail!(
            "--device {index}: adapter \"{}\" ({}) cannot be selected by Burn's wgpu backend; pass another index or --device cpu",
            adapter.name,
            adapter.kind
        ),
    };
    Ok(SelectedDevice {
        device: Device::wgpu(kind),
        name: format!("{} ({}, {})", adapter.name, adapter.backend, adapter.kind),
    })
}

/// Memory in use now: the process (resident set, and its peak) and, on backends that report
/// it, the device allocator (bytes in live tensors, and bytes it holds from the driver).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MemoryReading {
    pub rss_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
    pub device_bytes_in_use: Option<u64>,
    pub device_bytes_reserved: Option<u64>,
}

/// Reads [`MemoryReading`] (process figures from /proc on Linux; `None` elsewhere).
pub fn memory(device: &Device) -> MemoryReading {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|k| k * 1024)
    };
    let pool = device.memory_pool_usage();
    MemoryReading {
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
        device_bytes_in_use: pool.as_ref().map(|p| p.bytes_in_use),
        device_bytes_reserved: pool.as_ref().map(|p| p.bytes_reserved),
    }
}

thread_local! {
    /// Read-backs through [`read_f32`] and [`read_scalar`] on this thread so far (each a wait
    /// for the device on a GPU), and the bytes they brought back.
    static READBACKS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    /// Host-to-device copies this library makes on this thread so far (batches, kernel
    /// parameter blocks), and their bytes.
    static UPLOADS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// One more transfer of `bytes` in `tally`.
fn count(tally: &'static LocalKey<Cell<(u64, u64)>>, bytes: usize) {
    tally.with(|c| {
        let (n, b) = c.get();
        c.set((n + 1, b + bytes as u64));
    });
}

pub(crate) fn count_upload(bytes: usize) {
    count(&UPLOADS, bytes);
}

/// (uploads, bytes uploaded) on this thread so far.
pub fn uploads() -> (u64, u64) {
    UPLOADS.with(Cell::get)
}

/// (read-backs, bytes read back) on this thread so far.
pub fn readbacks() -> (u64, u64) {
    READBACKS.with(Cell::get)
}

/// The values of `t`, read back without blocking; `what` names them in errors.
pub async fn read_f32<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    count(&READBACKS, t.shape().num_elements() * 4);
    t.into_data_async()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {what} back: {e:?}"))?
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read {what} back: {e:?}"))
}

/// A one-element tensor's value, read back without blocking.
pub async fn read_scalar(t: Tensor<1>) -> Result<f64> {
    count(&READBACKS, 4);
    let value = t
        .into_scalar_async::<f32>()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read a scalar back: {e:?}"))?;
    Ok(value as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::util::kernel::flush::{flushing, keep_subnormals_here, spawn};

    /// Fails if a compute thread of the CPU device (the selecting one, rayon's pool, a kernel's
    /// scoped thread) runs without flushing subnormals, starting from threads that did not
    /// flush (a new thread inherits its parent's setting), or if flushing does not zero one.
    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn every_compute_thread_of_the_cpu_device_flushes_subnormals() {
        std::thread::spawn(|| {
            keep_subnormals_here();
            rayon::broadcast(|_| keep_subnormals_here());
            assert_eq!(flushing(), Some(false));
            let kernel_thread = std::thread::scope(|s| spawn(s, flushing).join().unwrap());
            assert_eq!(
                kernel_thread,
                Some(true),
                "a kernel thread of a non-flushing parent"
            );
            select(DeviceChoice::Cpu).unwrap();
            assert_eq!(cpu_flushes_subnormals(), Some(true));
            let tiny = std::hint::black_box(f32::MIN_POSITIVE);
            assert_eq!(
                std::hint::black_box(tiny * 0.5),
                0.0,
                "a subnormal result survived"
            );
        })
        .join()
        .unwrap();
    }
}
