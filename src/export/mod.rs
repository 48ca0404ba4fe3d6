//! Where finished spans go: one [`ExportWorker`](batch) per export pipeline feeding the OTLP or
//! console exporter.

pub(crate) mod batch;
pub mod console;
pub(crate) mod otlp;
pub(crate) mod otlp_fast;

pub use batch::ExportStats;
