//! The JVM behaviours OpenTSDB's answers expose, reproduced in one place.
//!
//! OpenTSDB is Java: its replies carry Java's number parsers' messages,
//! Java's double-to-text, `HashMap` iteration order and `String.split`'s
//! quirks, and its HTTP bodies are bound by Jackson. rtsd matches those
//! byte for byte, and every layer that needs one of them (the telnet
//! `protocol`, the `query` engine, the `http` handlers) takes it from here:
//!
//! - [`number`]: `Tags.parseLong`, `Double.parseDouble`, `Integer.parseInt`
//!   and their `NumberFormatException` messages;
//! - [`double_text`]: `Double.toString`, for every double rtsd writes;
//! - [`hashmap_order`]: a `HashMap<String, String>`'s iteration order and
//!   `toString`, for messages that embed a tag map;
//! - [`split`]: `String.split`'s dropping of trailing empty parts;
//! - [`jackson`]: Jackson's scalar coercions (`"true"` for `true`, a number
//!   for a string) as serde `deserialize_with` helpers.
//!
//! Strings are Rust `&str`; where Java would count UTF-16 units
//! (`String.length()`, `String.hashCode()`), so does this module.
//!
//! This module sits at the bottom of the crate: it depends on `model` (for
//! a stored value's text) and on nothing else of rtsd, so any layer can
//! import it without pulling in I/O.

pub mod double_text;
pub mod hashmap_order;
pub mod jackson;
pub mod number;
pub mod split;
