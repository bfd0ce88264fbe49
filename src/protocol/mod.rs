//! The telnet line protocol: one line in, one [`Command`] or one reply-ready
//! [`LineError`] out. Pure — no I/O, no state — so the connection code
//! (framing, line limits, writing replies) and the HTTP `/api/put` path can
//! both call it, and it fuzzes and benchmarks in isolation.
//!
//! The target is OpenTSDB 2.4's telnet interface: the same commands, the
//! same accepted `put` lines, and for a refused line the same reply text,
//! decided by the same first failing check. `protocol/README.md` at the
//! repository root is the written contract (grammar, every reply, every
//! deliberate difference) and `protocol/vectors/telnet.jsonl` the
//! conformance vectors that pin it. rtsd's deliberate differences here:
//! UTF-8 instead of ISO-8859-1, runs of spaces and a trailing `\r`
//! tolerated, tags optional unless `require_tags`, `<sec>.<frac>`
//! timestamps read as seconds plus a fraction, `max_tags` configurable, a
//! reply for an over-long line.
//!
//! Layout: `lexer` (nom: words, tags), `timestamp`, `names` (allowed
//! characters), `put` (the check sequence), `error` (reply texts and stats
//! labels), `series_cache` (a connection's series by their text, so a
//! repeated series skips the tag checks; the one piece with state). Java's number parsers and `HashMap` order, which the checks and
//! their messages follow, come from [`crate::java`].

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod lexer;
mod names;
mod put;
mod series_cache;
mod timestamp;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use error::{
    line_too_long, not_authenticated, too_many_series, DataCommand, LineError, NameRole, PutError,
    SeriesLimit, KINDS, MAX_REPLY_BYTES,
};
pub use names::first_illegal_char;
pub use put::Put;
pub use series_cache::SeriesCache;

use lexer::Words;

// The reply constants are complete texts, final `\n` included, to be
// written as they are; a `LineError`'s text is one line without its `\n`.

/// Reply to `help`: OpenTSDB's text as an OpenTSDB with
/// `tsd.no_diediedie=true` prints it, trailing space included. rtsd refuses
/// `diediedie`, so it does not advertise it.
pub const HELP_REPLY: &str =
    "available commands: stats dropcaches version exit help put rollup histogram \n";

/// Reply to `dropcaches`, as OpenTSDB words it.
pub const DROPCACHES_REPLY: &str = "Caches dropped.\n";

/// Reply to `diediedie`. OpenTSDB answers `Cleaning up and exiting now.`
/// and stops; rtsd keeps running, since any client on the port could
/// otherwise stop it, and says so.
pub const DIEDIEDIE_REPLY: &str =
    "diediedie: refused: rtsd does not shut down on a telnet command; stop it with SIGTERM\n";

/// The `version` reply: two lines, like OpenTSDB's revision and build
/// strings, so tools that print them show something meaningful.
pub fn version_reply() -> String {
    format!(
        "rtsd {} built at revision {} (OpenTSDB 2.4.1 compatible)\nBuilt for {}-{}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

/// Parser settings; `Default` gives OpenTSDB's limits with rtsd's lenient
/// choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// Most tags a `put` may carry (`tsd.storage.max_tags`; default 8).
    pub max_tags: usize,
    /// Refuse a `put` without tags with OpenTSDB's `Need at least one tag`.
    /// Off by default: collectors never read replies, so a refusal is
    /// silent data loss.
    pub require_tags: bool,
    /// Extra characters allowed in metric and tag names
    /// (`tsd.core.tag.allow_specialchars`); NUL, CR and U+FFFD are never
    /// allowed.
    pub allow_special_chars: String,
    /// Refuse a point more than this many ms ahead of now (`max-future`);
    /// `None` accepts any. The one check that reads the clock, after all
    /// of OpenTSDB's, so its replies come first.
    pub max_future_ms: Option<i64>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_tags: 8,
            require_tags: false,
            allow_special_chars: String::new(),
            max_future_ms: None,
        }
    }
}

/// Reply to an `auth` whose token is known, in OpenTSDB 2.4's words.
pub const AUTH_SUCCESS_REPLY: &str = "AUTH_SUCCESS.\n";

/// Reply to any other `auth`, in OpenTSDB 2.4's words; it never says why.
pub const AUTH_FAIL_REPLY: &str = "AUTH_FAIL\n";

/// What a line asks for. Replies other than errors are the caller's: the
/// version lines, [`HELP_REPLY`], the stats lines, [`DROPCACHES_REPLY`],
/// closing on `Exit`, [`DIEDIEDIE_REPLY`], [`AUTH_SUCCESS_REPLY`] or
/// [`AUTH_FAIL_REPLY`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command<'a> {
    Put(Put<'a>),
    Version,
    Help,
    Stats,
    DropCaches,
    Exit,
    DieDieDie,
    /// `auth basic <name> <secret>`; `None` for any other `auth` line,
    /// which fails without a reason (the line may hold a secret).
    Auth(Option<Credentials<'a>>),
}

/// A name and secret as `auth basic` gives them, to be checked by the
/// caller. `Debug` hides the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub name: &'a [u8],
    pub secret: &'a [u8],
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &String::from_utf8_lossy(self.name))
            .finish_non_exhaustive()
    }
}

/// Parses one line, given without its `\n`; one trailing `\r` is ignored.
/// Command names are exact and case-sensitive; words after a non-data
/// command are ignored, as OpenTSDB does.
pub fn parse_line<'a>(line: &'a [u8], opts: &ParseOptions) -> Result<Command<'a>, LineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = Words::new(line);
    let command = words.next().map_or(&b""[..], |word| word.bytes);
    let rejected = |command, error| LineError::Rejected { command, error };
    match command {
        b"put" => put::parse_put(words, opts)
            .map(Command::Put)
            .map_err(|e| rejected(DataCommand::Put, e)),
        b"rollup" => Err(rejected(DataCommand::Rollup, put::reject_rollup(words))),
        b"histogram" => Err(rejected(
            DataCommand::Histogram,
            PutError::HistogramNotEnabled,
        )),
        b"version" => Ok(Command::Version),
        b"help" => Ok(Command::Help),
        b"stats" => Ok(Command::Stats),
        b"dropcaches" => Ok(Command::DropCaches),
        b"exit" => Ok(Command::Exit),
        b"diediedie" => Ok(Command::DieDieDie),
        b"auth" => Ok(Command::Auth(credentials(words))),
        other => Err(LineError::UnknownCommand {
            word: String::from_utf8_lossy(other).into_owned(),
        }),
    }
}

/// `basic <name> <secret>` and nothing after.
fn credentials(mut words: Words<'_>) -> Option<Credentials<'_>> {
    if words.next()?.bytes != b"basic" {
        return None;
    }
    let name = words.next()?.bytes;
    let secret = words.next()?.bytes;
    words
        .next()
        .is_none()
        .then_some(Credentials { name, secret })
}
