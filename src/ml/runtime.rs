//! Process set-up for model work: allocator and thread-pool settings
//! ([`init_runtime`]) and the compute device by name ([`device_from_name`]).

use anyhow::{Context, Result};
use candle_core::Device;

use crate::util::usage;

/// Process-wide settings that make CPU training and inference faster; call
/// once at the start of a command, before any tensor work. Settings the user
/// made through the environment are kept.
///
/// * glibc malloc: keep freed memory in the heap (large mmap threshold, no
///   trimming), so the many large short-lived tensors of a forward/backward
///   pass do not page-fault fresh zeroed pages on every allocation.
/// * candle's elementwise ops on the calling thread only (`CANDLE_NUM_THREADS=1`;
///   matmuls keep using all cores through rayon), and idle pool workers park
///   quickly: spinning workers of a second pool compete with the matmul
///   threads for the cores.
pub fn init_runtime() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: mallopt only changes allocator tuning parameters.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, 32 << 20);
                mallopt(M_TRIM_THRESHOLD, i32::MAX);
            }
        }
    }
    // mimalloc (the binary's global allocator) returns freed memory to the OS
    // after a delay; a training step frees and re-allocates gigabytes, so
    // every step paid for the kernel zeroing fresh pages again (about a fifth
    // of the CPU time; measured 200 -> 245 trained tokens/s on SmolLM2-135M).
    // Keep freed memory instead: the footprint stays at its peak, which is
    // what the peak-RSS figures already count.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        extern "C" {
            fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
        }
        // `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49).
        const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
        // SAFETY: sets a tuning option of the statically linked mimalloc.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    // Elementwise ops run on the calling thread: they are memory-bound, and a
    // second pool of spinning workers competes with the matmul threads.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "2000");
    }
}

/// The name [`device_from_name`] takes for a device.
pub fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else if device.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}

/// Picks a device by name.
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            Device::new_cuda(0).context("opening CUDA device 0 (is this a --features cuda build?)")
        }
        other => Err(usage(format!("unknown device {other:?} (cpu or cuda)"))),
    }
}
