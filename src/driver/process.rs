//! This process's resource use, for reports and benchmarks (Linux `/proc`; `None` elsewhere).

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
