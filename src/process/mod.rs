//! The process itself rather than its requests: its CPU, memory, open file descriptors,
//! threads and tokio runtime, sampled in the background by the [`ProcessSampler`] profiling
//! carries, and CPU profiles on demand ([`cpu_profile`], feature `cpu-profile`).
//!
//! Not the OpenTelemetry *resource* (the attributes naming the service, host and process on
//! every exported span), which set-up builds in `setup/resource.rs`.

#[cfg(feature = "cpu-profile")]
pub mod cpu_profile;
mod resources;

pub(crate) use resources::WeakProcessSampler;
pub use resources::{
    ProcessSample, ProcessSampler, ProcessSummary, DEFAULT_SAMPLE_INTERVAL, MIN_SAMPLE_INTERVAL,
    OPEN_FDS_CAP, RECENT_SAMPLES,
};
