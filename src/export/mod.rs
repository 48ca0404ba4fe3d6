//! Where finished spans go: one export worker per pipeline (a bounded queue drained by a thread
//! of its own) feeding the OTLP or the console exporter.

pub(crate) mod batch;
pub mod console;
pub(crate) mod otlp;
pub(crate) mod otlp_fast;
mod workers;

pub use batch::ExportStats;
pub(crate) use workers::Workers;
