//! A live progress line on stderr for long stages: a bar against the stage's time limit when it
//! has one (the MILP), else a spinner with the elapsed seconds. Only drawn on a terminal.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Draws until dropped, then clears its line.
pub struct StageProgress {
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

const WIDTH: usize = 24;
const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

/// The text of one frame, `elapsed` into a stage with an optional time limit.
pub fn frame(label: &str, elapsed: Duration, limit: Option<Duration>, tick: usize) -> String {
    let secs = elapsed.as_secs_f64();
    match limit {
        Some(limit) if !limit.is_zero() => {
            let done = (secs / limit.as_secs_f64()).clamp(0.0, 1.0);
            let filled = (done * WIDTH as f64).round() as usize;
            format!(
                "{label} [{}{}] {secs:.1} s / {} s limit",
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                limit.as_secs()
            )
        }
        _ => format!("{label} {} {secs:.1} s", SPINNER[tick % SPINNER.len()]),
    }
}

impl StageProgress {
    /// Starts drawing `label` when `enabled`; otherwise does nothing.
    pub fn start(enabled: bool, label: String, limit: Option<Duration>) -> StageProgress {
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = enabled.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut tick = 0;
                while !stop.load(Ordering::Relaxed) {
                    let line = frame(&label, start.elapsed(), limit, tick);
                    let _ = write!(std::io::stderr(), "\r\x1b[2K  {line}");
                    tick += 1;
                    std::thread::sleep(Duration::from_millis(120));
                }
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            })
        });
        StageProgress { stop, ticker }
    }
}

impl Drop for StageProgress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_with_the_time_limit() {
        let half = frame(
            "milp",
            Duration::from_secs(30),
            Some(Duration::from_secs(60)),
            0,
        );
        assert_eq!(
            half,
            format!(
                "milp [{}{}] 30.0 s / 60 s limit",
                "#".repeat(12),
                ".".repeat(12)
            )
        );
        let over = frame(
            "milp",
            Duration::from_secs(90),
            Some(Duration::from_secs(60)),
            0,
        );
        assert!(over.contains(&"#".repeat(WIDTH)));
        assert_eq!(
            frame("bounds", Duration::from_millis(1500), None, 1),
            "bounds / 1.5 s"
        );
    }

    #[test]
    fn disabled_progress_draws_nothing() {
        let p = StageProgress::start(false, "x".into(), None);
        assert!(p.ticker.is_none());
    }
}
