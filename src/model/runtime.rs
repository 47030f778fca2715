//! What libtorch this process runs on: its version, the devices it sees, and its CPU threads.

use serde::Serialize;

/// The libtorch runtime as `lethe doctor` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct TorchRuntime {
    /// Version of the libtorch actually loaded (from the `version.py` beside the loaded library), or the
    /// version it was built against when that file cannot be found.
    pub libtorch_version: String,
    /// Where the loaded `libtorch_cpu.so` lives.
    pub libtorch_path: Option<String>,
    /// True when the CUDA part of libtorch is loaded into this process (linked, not only present).
    pub cuda_linked: bool,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    pub cpu_threads: i32,
    /// The device training and sampling will use: `cuda:0` or `cpu`.
    pub device: String,
}

impl TorchRuntime {
    pub fn probe() -> TorchRuntime {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let lib_of = |name: &str| {
            maps.lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .find(|p| p.ends_with(name))
                .map(str::to_string)
        };
        let libtorch_path = lib_of("/libtorch_cpu.so");
        let libtorch_version = libtorch_path
            .as_deref()
            .and_then(|p| {
                std::path::Path::new(p)
                    .parent()?
                    .parent()
                    .map(|d| d.join("version.py"))
            })
            .and_then(|v| std::fs::read_to_string(v).ok())
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("__version__ = ")
                        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| env!("LETHE_BUILT_LIBTORCH_VERSION").to_string());
        let cuda_available = tch::Cuda::is_available();
        let cuda_devices = if cuda_available {
            tch::Cuda::device_count()
        } else {
            0
        };
        TorchRuntime {
            libtorch_version,
            libtorch_path,
            cuda_linked: lib_of("/libtorch_cuda.so").is_some(),
            cuda_available,
            cuda_devices,
            cudnn_available: cuda_available && tch::Cuda::cudnn_is_available(),
            cpu_threads: tch::get_num_threads(),
            device: if cuda_available {
                "cuda:0".into()
            } else {
                "cpu".into()
            },
        }
    }
}
