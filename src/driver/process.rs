//! This process's resource use, for reports and benchmarks (Linux `/proc`; `None` elsewhere),
//! and the allocator's tuning.

// The allocator below is mimalloc's; linking it here keeps `mi_option_set` resolvable in every
// binary of the crate.
use mimalloc as _;

/// Tells mimalloc (the `upcc` binary's and the benches' global allocator) never to return freed
/// memory to the OS. By default it does so after a delay, and the engine's large per-step
/// temporaries then fault in anew, zeroed by the kernel: 20–30 Conv-big digits on two threads
/// took 28,000–42,000 page faults and up to 3 s of system time, against about 600 without
/// purging. Peak RSS is unchanged (the high-water mark either way). Harmless under another
/// global allocator.
pub fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc's option enum (v3, the `mimalloc` crate's default; v2
    // has it at the same index). -1: never purge.
    const PURGE_DELAY: std::os::raw::c_int = 15;
    extern "C" {
        fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
    }
    // SAFETY: a plain setter of the statically linked mimalloc, valid at any time.
    unsafe { mi_option_set(PURGE_DELAY, -1) }
}

/// CPU seconds (user + system) of this process so far.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size of this process so far, in MB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_figures_are_positive_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(super::peak_rss_mb().unwrap() > 0.0);
            assert!(super::cpu_seconds().unwrap() >= 0.0);
        }
    }
}
