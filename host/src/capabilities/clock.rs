//! The `clock` capability: wall-clock time, pinnable for replaying recorded fixtures.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::HostWallClock;

use std::sync::Arc;

use super::{CallScope, CallState, Capability, CapabilityConfig, NoConfig};
use crate::wit::types::Datetime;

/// Where "now" comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant since the Unix epoch (`sluice driver test --now`).
    Pinned(Duration),
}

impl Clock {
    /// Time since the Unix epoch.
    pub fn now(&self) -> Duration {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            Clock::Pinned(at) => *at,
        }
    }

    /// Now as the WIT `datetime`.
    pub fn now_datetime(&self) -> Datetime {
        let now = self.now();
        Datetime {
            seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            nanoseconds: now.subsec_nanos(),
        }
    }
}

impl HostWallClock for Clock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Clock::now(self)
    }
}

impl Capability for Clock {
    const INTERFACE: &'static str = "clock";
    const FUNCTIONS: &'static [&'static str] = &["now"];
    type Config = NoConfig;
    type Driver = ();
    type Call = Clock;

    fn new(_: &NoConfig, host: &CapabilityConfig) -> anyhow::Result<Self> {
        Ok(host.clock.clone())
    }

    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        crate::wit::clock::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)
    }

    fn start_call(&self, _: &Arc<()>, scope: &CallScope) -> Clock {
        match scope.fixed().and_then(|f| f.clock.as_ref()) {
            Some(pinned) => pinned.clone(),
            None => self.clone(),
        }
    }
}

impl crate::wit::clock::Host for CallState {
    async fn now(&mut self) -> wasmtime::Result<Datetime> {
        Ok(self.caps.clock.now_datetime())
    }
}
