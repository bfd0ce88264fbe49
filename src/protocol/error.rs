//! Why a line was refused. The `Display` text of a [`LineError`] is the
//! exact reply line (without its `\n`) — OpenTSDB's wording wherever
//! OpenTSDB has one — and [`LineError::kind`] is a short, stable label for
//! counting rejections by reason.

use std::fmt;

use crate::java::number::NumberError;

/// Every label [`LineError::kind`] can return.
///
/// | kind | cause |
/// |---|---|
/// | `unknown_command` | first word is not a command |
/// | `line_too_long` | the line exceeded the connection's limit (never returned by `parse_line`) |
/// | `not_enough_arguments` | too few words after `put`/`rollup` |
/// | `invalid_timestamp` | timestamp not a Java long, ≤ 0, or beyond 13-digit milliseconds |
/// | `future_timestamp` | timestamp further ahead of now than `max_future_ms` |
/// | `invalid_tag` | a tag word that is not `key=value` |
/// | `duplicate_tag` | the same tag key twice with different values |
/// | `invalid_value` | value is not a number Java would parse |
/// | `nan_or_inf` | value is NaN or infinite (`nan`, `-inf`, `1e309`, …) |
/// | `missing_tags` | no tag while `require_tags` is on |
/// | `too_many_tags` | more tags than `max_tags` |
/// | `illegal_character` | metric or tag with a character outside the allowed set |
/// | `not_enabled` | `rollup` or `histogram`, which need storage rtsd does not have |
/// | `not_authenticated` | a `put` before `auth` while auth is on (never returned by `parse_line`) |
/// | `too_many_series` | a point of a new series beyond `max-series` (never returned by `parse_line`) |
/// | `too_many_new_series` | a point of a new series beyond `max-new-series-per-minute` (never returned by `parse_line`) |
pub const KINDS: &[&str] = &[
    "unknown_command",
    "line_too_long",
    "not_enough_arguments",
    "invalid_timestamp",
    "future_timestamp",
    "invalid_tag",
    "duplicate_tag",
    "invalid_value",
    "nan_or_inf",
    "missing_tags",
    "too_many_tags",
    "illegal_character",
    "not_enabled",
    "not_authenticated",
    "too_many_series",
    "too_many_new_series",
];

/// A refused line; `to_string()` is the reply to send, minus the `\n`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// The first word is no command. OpenTSDB's text, two spaces included;
    /// the word is the line's first word decoded as lossy UTF-8 (empty for
    /// an empty line).
    #[error("unknown command: {word}.  Try `help'.")]
    UnknownCommand { word: String },
    /// The line grew past the connection's limit. OpenTSDB closes the
    /// connection without a word; rtsd replies with this and goes on with
    /// the next line.
    #[error("line too long: maximum allowed: {limit}")]
    LineTooLong { limit: usize },
    /// A `put`, `rollup` or `histogram` line that was refused:
    /// `<command>: <class>: <message>`.
    #[error("{command}: {error}")]
    Rejected {
        command: DataCommand,
        error: PutError,
    },
}

impl LineError {
    /// The reply line, without its `\n`: the `Display` text, cut to at
    /// most [`MAX_REPLY_BYTES`] on a character boundary. Formatting stops
    /// at the cut, so a huge quoted word is never copied whole.
    pub fn reply(&self) -> String {
        let mut out = Bounded {
            text: String::new(),
            cut: false,
        };
        // `Bounded` refuses to grow past the cap with an error, which only
        // ends the formatting early.
        let _ = fmt::write(&mut out, format_args!("{self}"));
        if out.cut {
            out.text.push_str(CUT_MARK);
        }
        out.text
    }

    /// A short label for counting rejections by reason; one of [`KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            LineError::UnknownCommand { .. } => "unknown_command",
            LineError::LineTooLong { .. } => "line_too_long",
            LineError::Rejected { error, .. } => error.kind(),
        }
    }

    /// The `type` tag under which OpenTSDB counts this error in
    /// `tsd.rpc.errors` (`invalid_values` for `NumberFormatException`s,
    /// `illegal_arguments` for the rest); `None` for lines OpenTSDB does not
    /// count there.
    pub fn rpc_error_type(&self) -> Option<&'static str> {
        match self {
            LineError::Rejected { error, .. } if error.is_number_format() => Some("invalid_values"),
            LineError::Rejected { .. } => Some("illegal_arguments"),
            LineError::UnknownCommand { .. } | LineError::LineTooLong { .. } => None,
        }
    }
}

/// The reply to a `put` on a connection that may not write.
pub fn not_authenticated() -> LineError {
    LineError::Rejected {
        command: DataCommand::Put,
        error: PutError::NotAuthenticated,
    }
}

/// The reply to a `put` of a new series that a cardinality limit refuses.
pub fn too_many_series(limit: SeriesLimit) -> LineError {
    LineError::Rejected {
        command: DataCommand::Put,
        error: PutError::TooManySeries(limit),
    }
}

/// The cardinality limit a new series ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesLimit {
    /// `max-series`: the store holds this many series already.
    Total(u64),
    /// `max-new-series-per-minute`: this many were created just now.
    PerMinute(u32),
}

impl fmt::Display for SeriesLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeriesLimit::Total(n) => write!(f, "max-series {n} reached"),
            SeriesLimit::PerMinute(n) => write!(f, "max-new-series-per-minute {n} reached"),
        }
    }
}

/// The reply for a line longer than `limit` bytes. It states the limit
/// only: how much of the line the connection had buffered when it gave up
/// says nothing to the client.
pub fn line_too_long(limit: usize) -> LineError {
    LineError::LineTooLong { limit }
}

/// Longest reply line [`LineError::reply`] gives. Errors quote the input,
/// and a bad line may be as long as the line limit (64 KiB by default): a
/// client that never reads must not fill the reply buffer with one echo.
pub const MAX_REPLY_BYTES: usize = 512;

/// Marks a reply cut at [`MAX_REPLY_BYTES`].
const CUT_MARK: &str = "...";

/// A `fmt::Write` that keeps the first `MAX_REPLY_BYTES - CUT_MARK.len()`
/// bytes and stops the formatter after that.
struct Bounded {
    text: String,
    cut: bool,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_REPLY_BYTES - CUT_MARK.len() - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.cut = true;
        Err(fmt::Error)
    }
}

/// The command word of a data line; it prefixes the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCommand {
    Put,
    Rollup,
    Histogram,
}

impl fmt::Display for DataCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataCommand::Put => "put",
            DataCommand::Rollup => "rollup",
            DataCommand::Histogram => "histogram",
        })
    }
}

/// Why a data line was refused, in OpenTSDB's words: `invalid value: …`
/// for its `NumberFormatException`s, `illegal argument: …` for the rest.
/// Names and words are quoted as received (lossy UTF-8); maps are rendered
/// in Java `HashMap` order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PutError {
    /// Too few words. `need` is OpenTSDB's number (4 for `put`, 7 for
    /// `rollup`), kept even where rtsd needs fewer.
    #[error("illegal argument: not enough arguments (need least {need}, got {got})")]
    NotEnoughArguments { need: usize, got: usize },
    /// The timestamp is not a Java long.
    #[error("invalid value: {0}")]
    TimestampText(NumberError),
    #[error("illegal argument: invalid timestamp: {0}")]
    NonPositiveTimestamp(i64),
    #[error("illegal argument: invalid tag: {word}")]
    InvalidTag { word: String },
    /// `tags` is the map built from the tags before this word.
    #[error("illegal argument: duplicate tag: {word}, tags={tags}")]
    DuplicateTag { word: String, tags: String },
    /// The value is not a number Java parses.
    #[error("invalid value: {0}")]
    InvalidValue(NumberError),
    /// A NaN or infinity token (`nan`, `-Infinity`, …): OpenTSDB's
    /// `parseLong` refuses it as an invalid character, rtsd counts it apart.
    #[error("invalid value: {0}")]
    NonFiniteToken(NumberError),
    /// A float that parsed to NaN or infinity, e.g. `1e309`.
    #[error("illegal argument: value is NaN or Infinite: {value} for metric={metric} timestamp={timestamp}")]
    NanOrInfinite {
        value: &'static str,
        metric: String,
        timestamp: i64,
    },
    /// Milliseconds beyond 13 digits. `value` is OpenTSDB's
    /// `[bytes]/flags` rendering of the encoded value.
    #[error("illegal argument: bad timestamp={timestamp} when trying to add value={value} to metric={metric}, tags={tags}")]
    TimestampOutOfRange {
        timestamp: i64,
        value: String,
        metric: String,
        tags: String,
    },
    /// No tag, with `require_tags` on.
    #[error("illegal argument: Need at least one tag (metric={metric}, tags={{}})")]
    MissingTags { metric: String },
    #[error("illegal argument: Too many tags: {count} maximum allowed: {max}, tags: {tags}")]
    TooManyTags {
        count: usize,
        max: usize,
        tags: String,
    },
    #[error("illegal argument: Invalid {what} (\"{name}\"): illegal character: {ch}")]
    IllegalCharacter {
        what: NameRole,
        name: String,
        ch: char,
    },
    /// rtsd's own: further ahead of now than `max-future` allows, so a
    /// client with a wrong clock cannot make the store create a partition
    /// per future day. `.0` is the timestamp as given.
    #[error("illegal argument: timestamp too far in the future: {0}")]
    TooFarInFuture(i64),
    /// Any well-formed `rollup`: rtsd has no rollup tables to write to.
    #[error("illegal argument: No rollup or aggregations were configured")]
    RollupNotConfigured,
    /// Any `histogram` line: rtsd has no histogram storage.
    #[error("illegal argument: Histogram storage has not been enabled. Check the 'tsd.core.histograms.config' configuration.")]
    HistogramNotEnabled,
    /// A `put` on a connection without a `write` token while auth is on,
    /// from a peer outside `write-networks`. rtsd's own; the connection
    /// decides it, not the parser.
    #[error("illegal argument: not authenticated")]
    NotAuthenticated,
    /// rtsd's own: a point of a series the store does not have yet, while
    /// a cardinality limit is reached (see `crate::cardinality`). The
    /// connection decides it, not the parser.
    #[error("illegal argument: too many series: {0}")]
    TooManySeries(SeriesLimit),
}

impl PutError {
    fn kind(&self) -> &'static str {
        match self {
            PutError::NotEnoughArguments { .. } => "not_enough_arguments",
            PutError::TimestampText(_)
            | PutError::NonPositiveTimestamp(_)
            | PutError::TimestampOutOfRange { .. } => "invalid_timestamp",
            PutError::TooFarInFuture(_) => "future_timestamp",
            PutError::InvalidTag { .. } => "invalid_tag",
            PutError::DuplicateTag { .. } => "duplicate_tag",
            PutError::InvalidValue(_) => "invalid_value",
            PutError::NonFiniteToken(_) | PutError::NanOrInfinite { .. } => "nan_or_inf",
            PutError::MissingTags { .. } => "missing_tags",
            PutError::TooManyTags { .. } => "too_many_tags",
            PutError::IllegalCharacter { .. } => "illegal_character",
            PutError::RollupNotConfigured | PutError::HistogramNotEnabled => "not_enabled",
            PutError::NotAuthenticated => "not_authenticated",
            PutError::TooManySeries(SeriesLimit::Total(_)) => "too_many_series",
            PutError::TooManySeries(SeriesLimit::PerMinute(_)) => "too_many_new_series",
        }
    }

    fn is_number_format(&self) -> bool {
        matches!(
            self,
            PutError::TimestampText(_) | PutError::InvalidValue(_) | PutError::NonFiniteToken(_)
        )
    }
}

/// Which name held the illegal character, as OpenTSDB's message says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRole {
    Metric,
    /// A tag key; OpenTSDB quotes the tag's value alongside.
    TagKey {
        value: String,
    },
    /// A tag value; OpenTSDB quotes the tag's key alongside.
    TagValue {
        key: String,
    },
}

impl fmt::Display for NameRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRole::Metric => f.write_str("metric name"),
            NameRole::TagKey { value } => write!(f, "tag name with value [{value}]"),
            NameRole::TagValue { key } => write!(f, "tag value with key [{key}]"),
        }
    }
}
