//! The store's resource limiter: the driver's memory limit (wasmtime's `StoreLimits`),
//! watched. Wasmtime asks it before every linear-memory growth, instantiation included,
//! so it knows the most memory a call held (the `sluice_driver_memory_peak_bytes`
//! metric) and whether a growth was refused (a trap after one is an out-of-memory).

use wasmtime::{ResourceLimiter, StoreLimits};

/// `StoreLimits` plus the call's memory accounting.
pub struct MemoryLimiter {
    limits: StoreLimits,
    /// Bytes of linear memory held now, over all of the instance's memories.
    held: usize,
    /// The most held at once.
    peak: usize,
    /// The last growth granted and the peak before it, undone if the growth then fails.
    last_grant: Option<(usize, usize)>,
    /// Growths refused (by the limit, or failed after the limit allowed them).
    refusals: u32,
}

impl MemoryLimiter {
    /// A limiter allowing each memory `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(max_bytes)
                .build(),
            held: 0,
            peak: 0,
            last_grant: None,
            refusals: 0,
        }
    }

    /// The most linear memory the instance held at once, in bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// How many growths were refused so far.
    pub fn refusals(&self) -> u32 {
        self.refusals
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            let grant = desired.saturating_sub(current);
            self.last_grant = Some((grant, self.peak));
            self.held = self.held.saturating_add(grant);
            self.peak = self.peak.max(self.held);
        } else {
            self.last_grant = None;
            self.refusals += 1;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        if let Some((grant, peak)) = self.last_grant.take() {
            self.held = self.held.saturating_sub(grant);
            self.peak = peak;
        }
        self.refusals += 1;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_peak_is_the_most_held_over_all_memories() {
        let mut limiter = MemoryLimiter::new(64 * MIB);
        // Two memories created (current 0), then one grows.
        assert!(limiter.memory_growing(0, 2 * MIB, None).unwrap());
        assert!(limiter.memory_growing(0, MIB, None).unwrap());
        assert!(limiter.memory_growing(2 * MIB, 10 * MIB, None).unwrap());
        assert_eq!(limiter.peak(), 11 * MIB);
        assert_eq!(limiter.refusals(), 0);
    }

    #[test]
    fn refused_and_failed_growths_do_not_count_towards_the_peak() {
        let mut limiter = MemoryLimiter::new(64 * MIB);
        assert!(limiter.memory_growing(0, MIB, None).unwrap());
        // Over the limit: refused, as StoreLimits refuses it.
        assert!(!limiter.memory_growing(MIB, 200 * MIB, None).unwrap());
        assert_eq!((limiter.peak(), limiter.refusals()), (MIB, 1));
        // Allowed, then failed (e.g. the pool's slot is smaller): undone.
        assert!(limiter.memory_growing(MIB, 32 * MIB, None).unwrap());
        limiter
            .memory_grow_failed(wasmtime::Error::msg("no room"))
            .unwrap();
        assert_eq!((limiter.peak(), limiter.refusals()), (MIB, 2));
        // And the memory's own maximum is a limit too.
        assert!(!limiter.memory_growing(MIB, 4 * MIB, Some(2 * MIB)).unwrap());
        assert_eq!(limiter.refusals(), 3);
    }
}
