//! Every way a query can fail, with the HTTP status and the text OpenTSDB
//! answers.
//!
//! The HTTP layer maps a [`QueryError`] straight onto OpenTSDB's error body
//! (`{"error":{"code":..,"message":..,"details":..}}`) through
//! [`QueryError::status`], [`QueryError::message`] and
//! [`QueryError::details`]. Messages are OpenTSDB's exact wording where a
//! client could match on it (validation, unknown names); the limits rtsd adds
//! use OpenTSDB's `QueryException` style.
//!
//! | variant | status | why |
//! |---|---|---|
//! | `BadRequest` | 400 | malformed request; OpenTSDB's `BadRequestException` |
//! | `NoSuchName` | 400 | unknown metric, tag key or literal tag value |
//! | `DownsampleTooFine` | 400 | the request alone asks for too many buckets, whatever is stored |
//! | `TooManySeries`, `TooManyPoints`, `TooManyBuckets` | 413 | OpenTSDB answers its own query limits with 413 |
//! | `DeadlineExceeded` | 503 | the server gave up; retrying later may work |
//! | `Storage` | 500 | the store failed |

use crate::model::NameKind;
use crate::query::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A malformed request. `message` is OpenTSDB's exact text; `details`
    /// carries the echo of the query where OpenTSDB sends one.
    #[error("{message}")]
    BadRequest {
        message: String,
        details: Option<String>,
    },
    /// A name in the query was never written (OpenTSDB's `NoSuchUniqueName`).
    #[error("No such name for '{}': '{name}'", kind_label(*kind))]
    NoSuchName { kind: NameKind, name: String },
    /// The filters matched more series than [`super::QueryLimits::max_series`].
    #[error(
        "Sorry, the query matched more than our limit of {limit} series. \
         Please try filtering using more tags or decrease your time range."
    )]
    TooManySeries { limit: usize },
    /// Reading or producing more points than [`super::QueryLimits::max_points`].
    #[error(
        "Sorry, you have attempted to fetch more than our limit of {limit} data points. \
         Please try filtering using more tags or decrease your time range."
    )]
    TooManyPoints { limit: usize },
    /// One downsample would lay more than
    /// [`super::QueryLimits::max_downsample_buckets`] buckets over the
    /// time range.
    #[error(
        "The downsample of sub-query {index} would make {buckets} buckets over the time range, \
         more than the limit of {limit}. Please use a longer downsample interval or a shorter \
         time range."
    )]
    DownsampleTooFine {
        index: usize,
        buckets: u64,
        limit: u64,
    },
    /// Downsample buckets times matched series over
    /// [`super::QueryLimits::max_query_buckets`].
    #[error(
        "Sorry, the query would make {buckets} buckets (downsample buckets times series), \
         more than our limit of {limit}. Please use a longer downsample interval, a shorter \
         time range or filter using more tags."
    )]
    TooManyBuckets { buckets: u64, limit: u64 },
    /// [`super::QueryLimits::deadline`] passed while the query ran.
    #[error("Query timeout exceeded")]
    DeadlineExceeded,
    #[error(transparent)]
    Storage(#[from] SourceError),
}

/// The UID table kind OpenTSDB names in its "No such name" messages.
fn kind_label(kind: NameKind) -> &'static str {
    match kind {
        NameKind::Metric => "metrics",
        NameKind::TagKey => "tagk",
        NameKind::TagValue => "tagv",
    }
}

impl QueryError {
    /// A 400 without details.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        QueryError::BadRequest {
            message: message.into(),
            details: None,
        }
    }

    /// The HTTP status OpenTSDB (or rtsd, for its own limits) answers with.
    pub fn status(&self) -> u16 {
        match self {
            QueryError::BadRequest { .. }
            | QueryError::NoSuchName { .. }
            | QueryError::DownsampleTooFine { .. } => 400,
            QueryError::TooManySeries { .. }
            | QueryError::TooManyPoints { .. }
            | QueryError::TooManyBuckets { .. } => 413,
            QueryError::DeadlineExceeded => 503,
            QueryError::Storage(_) => 500,
        }
    }

    /// The `message` of the error body.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The `details` of the error body, when there is one. OpenTSDB repeats
    /// the message for unknown names; a limit of rtsd's names the setting
    /// an operator can raise.
    pub fn details(&self) -> Option<String> {
        let setting = |key: &str| Some(format!("The limit is the {key} setting of rtsd"));
        match self {
            QueryError::BadRequest { details, .. } => details.clone(),
            QueryError::NoSuchName { .. } => Some(self.to_string()),
            QueryError::DownsampleTooFine { .. } => setting("max-downsample-buckets"),
            QueryError::TooManyBuckets { .. } => setting("max-query-buckets"),
            _ => None,
        }
    }

    /// The limit a refused query ran into, as the `reason` of
    /// `tsd.rtsd.query.refused`; `None` for other failures.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            QueryError::DownsampleTooFine { .. } => Some("downsample_buckets"),
            QueryError::TooManyBuckets { .. } => Some("query_buckets"),
            QueryError::TooManySeries { .. } => Some("series"),
            QueryError::TooManyPoints { .. } => Some("points"),
            QueryError::DeadlineExceeded => Some("deadline"),
            QueryError::BadRequest { .. }
            | QueryError::NoSuchName { .. }
            | QueryError::Storage(_) => None,
        }
    }

    /// Attaches `details` to a `BadRequest` that has none yet.
    pub(crate) fn with_details(self, text: impl FnOnce() -> String) -> Self {
        match self {
            QueryError::BadRequest {
                message,
                details: None,
            } => QueryError::BadRequest {
                message,
                details: Some(text()),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_messages_and_details() {
        let e = QueryError::NoSuchName {
            kind: NameKind::Metric,
            name: "x".into(),
        };
        assert_eq!(e.status(), 400);
        assert_eq!(e.message(), "No such name for 'metrics': 'x'");
        assert_eq!(
            e.details().as_deref(),
            Some("No such name for 'metrics': 'x'")
        );

        let e = QueryError::NoSuchName {
            kind: NameKind::TagValue,
            name: "web99".into(),
        };
        assert_eq!(e.message(), "No such name for 'tagv': 'web99'");

        let e = QueryError::bad("Missing queries").with_details(|| "TSQuery(..)".into());
        assert_eq!(
            (e.status(), e.message()),
            (400, "Missing queries".to_string())
        );
        assert_eq!(e.details().as_deref(), Some("TSQuery(..)"));

        assert_eq!(QueryError::TooManySeries { limit: 5 }.status(), 413);
        assert_eq!(QueryError::TooManyPoints { limit: 5 }.status(), 413);
        assert_eq!(QueryError::DeadlineExceeded.status(), 503);
        let e = QueryError::from(SourceError("disk".into()));
        assert_eq!(
            (e.status(), e.message()),
            (500, "storage error: disk".to_string())
        );
        assert_eq!(e.details(), None);
    }
}
