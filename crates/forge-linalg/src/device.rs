//! Device selection: CUDA > Metal > CPU, each accelerator behind its cargo feature
//! (`cuda`, `metal`); the default build is CPU-only.

use candle_core::Device;

/// The best available device: CUDA device 0 with the `cuda` feature and a working driver,
/// else Metal with the `metal` feature, else the CPU. Never fails.
pub fn best_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return d;
    }
    Device::Cpu
}

/// A short name for a device, for logs and result files ("cpu", "cuda:0", "metal:0").
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda:0".into(),
        Device::Metal(_) => "metal:0".into(),
    }
}
