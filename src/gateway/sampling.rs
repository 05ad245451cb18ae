//! Access-log sampling.

/// Deterministic sampling: of every run of requests, a `rate` share is logged, evenly spread.
#[derive(Debug)]
pub struct Sampler {
    rate: f64,
    seen: std::sync::atomic::AtomicU64,
}

impl Sampler {
    /// Logs a `rate` share (0.0 to 1.0) of requests.
    pub fn new(rate: f64) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
            seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether this request is logged.
    pub fn sample(&self) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f64;
        ((n + 1.0) * self.rate).floor() > (n * self.rate).floor()
    }
}

#[cfg(test)]
mod tests {
    use super::Sampler;

    #[test]
    fn sampling_logs_the_requested_share_evenly() {
        for (rate, want) in [(1.0, 1000), (0.0, 0), (0.5, 500), (0.1, 100), (0.25, 250)] {
            let s = Sampler::new(rate);
            let logged = (0..1000).filter(|_| s.sample()).count();
            assert_eq!(logged, want, "rate {rate}");
        }
    }
}
