//! The OpenTSDB query engine: `/api/query` semantics, pure Rust, no I/O.
//!
//! The HTTP layer parses a request with [`QueryRequest::from_get_params`] or
//! as JSON ([`QueryRequest::from_json`], or serde directly), runs it with
//! [`execute`] against any [`source::Source`] (the store implements it), and
//! writes the answer with [`QueryResponse::write_json`]. Every failure is a
//! [`QueryError`] carrying OpenTSDB's status, message and details.
//!
//! Modules, in pipeline order:
//!
//! - [`request`]: the `TSQuery` model and its validation into a plan; the
//!   GET form (`query_string`: the `m=` and `tsuid=` grammars) builds the
//!   same model;
//! - [`time`]: OpenTSDB's time formats and calendar arithmetic;
//! - [`filter`]: tag value filters;
//! - [`engine`]: resolving, grouping, and the order of the steps, within
//!   [`limits`]; each series goes through its sub-query's pipeline
//!   (`pipeline`: read, downsample, fill, rate) and each group through a
//!   cross-series sweep (`sweep`), whose series may be read on several
//!   threads (`parallel`); every long loop polls the deadline
//!   (`deadline`);
//! - [`downsample`], [`rate`], [`aggregator`]: the per-series and
//!   per-timestamp functions;
//! - [`output`]: the response and its JSON.
//!
//! Behaviour follows OpenTSDB 2.4 (see the shared reference, §2.3) except
//! where rtsd differs on purpose: floating-point cross-series maths,
//! `null` for every missing value, and one key per second without `ms`.
//! Each module's doc lists its own deviations.

pub mod aggregator;
mod deadline;
pub mod downsample;
pub mod engine;
pub mod error;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
mod memory;
pub mod output;
mod parallel;
mod pipeline;
mod query_string;
pub mod rate;
pub mod request;
pub mod source;
mod sweep;
pub mod time;

#[cfg(test)]
mod tests;

pub use aggregator::aggregator_names;
pub use engine::execute;
pub use error::QueryError;
pub use filter::filter_descriptions;
pub use limits::{QueryLimits, Sweeps};
pub use output::QueryResponse;
pub use request::{QueryRequest, SubQuery};
