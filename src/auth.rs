//! Who may do what: the `[auth]` tokens of the config file, checked on both
//! ports.
//!
//! A token has a name, a secret and scopes. HTTP clients present it as
//! `Authorization: Bearer <secret>` or as Basic with user = name and
//! password = secret (what Grafana's OpenTSDB data source and tcollector
//! send); telnet clients with OpenTSDB 2.4's `auth basic <name> <secret>`.
//! Telnet peers in `write-networks` may `put` without a token, for
//! collectors that cannot authenticate (collectd, old tcollector).
//!
//! Auth is on as soon as one token is defined; with none, everything is
//! allowed as before. Only the SHA-256 digest of each secret is kept
//! (`secret-sha256` lets the config file hold no secret at all), and a
//! presented secret is hashed and compared with every digest in constant
//! time, so neither memory dumps, logs, `/api/config` nor timing give a
//! secret away. The `Debug` form of [`Auth`] shows names and scopes only.

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a request may do. `admin` includes `write` and `read`, so one
/// operator token does everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub admin: bool,
}

impl Access {
    /// Everything: what every request gets while auth is off.
    pub const ALL: Access = Access {
        read: true,
        write: true,
        admin: true,
    };

    /// Whether this access covers `scope`.
    pub fn allows(self, scope: Scope) -> bool {
        self.admin
            || match scope {
                Scope::Read => self.read,
                Scope::Write => self.write,
                Scope::Admin => false,
            }
    }
}

/// One scope a token grants and an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Queries, suggest, lookup, last, annotations GET, stats, config,
    /// `/metrics`, the dashboard.
    Read,
    /// `/api/put`, annotation POST/PUT, metadata put, telnet `put`.
    Write,
    /// Anything that deletes or drops.
    Admin,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        })
    }
}

/// The `[auth]` table as written in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthFile {
    #[serde(default)]
    write_networks: Vec<String>,
    #[serde(default)]
    token: Vec<TokenFile>,
}

/// Parses an `[auth]` table's body as TOML (what a flag would give, if
/// `auth` had one; settings take their type's parser).
impl std::str::FromStr for AuthFile {
    type Err = String;
    fn from_str(text: &str) -> Result<AuthFile, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }
}

/// One `[[auth.token]]`. Its `Debug` leaves the secret out.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TokenFile {
    name: String,
    secret: Option<String>,
    secret_sha256: Option<String>,
    #[serde(default)]
    scopes: Vec<Scope>,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFile")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A checked token: its secret survives only as a digest.
#[derive(Clone, PartialEq, Eq)]
struct Token {
    name: String,
    digest: [u8; 32],
    access: Access,
}

/// A network in CIDR notation, e.g. `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `addr/prefix`; a bare address is a network of one.
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Network { addr, prefix })
    }

    /// Whether `peer` is inside; an IPv4 peer seen as an IPv4-mapped IPv6
    /// address (a dual-stack listener) matches IPv4 networks.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let (net, peer) = match (self.addr, peer.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(p)) => (
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(p)) << 96,
            ),
            (IpAddr::V6(n), IpAddr::V6(p)) => (u128::from(n), u128::from(p)),
            _ => return false,
        };
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        net & mask == peer & mask
    }
}

/// The validated `[auth]` settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Auth {
    tokens: Vec<Token>,
    write_networks: Vec<Network>,
    /// What was wrong in the table, for the config check to report.
    problems: Vec<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens: Vec<(&str, Access)> = self
            .tokens
            .iter()
            .map(|t| (t.name.as_str(), t.access))
            .collect();
        f.debug_struct("Auth")
            .field("tokens", &tokens)
            .field("write_networks", &self.write_networks)
            .finish()
    }
}

impl Auth {
    /// Checks the file's `[auth]` table; every problem is kept for
    /// [`Auth::problems`], named by token name or network text, never by
    /// secret. Bad tokens are left out.
    pub fn from_file(file: AuthFile) -> Auth {
        let mut errors = Vec::new();
        let mut write_networks = Vec::new();
        for text in &file.write_networks {
            match Network::parse(text) {
                Some(n) => write_networks.push(n),
                None => errors.push(format!(
                    "auth.write-networks: {text:?} is not a network like 10.0.0.0/8"
                )),
            }
        }
        let mut tokens: Vec<Token> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for t in file.token {
            let name = &t.name;
            let digest = match (&t.secret, &t.secret_sha256) {
                (Some(secret), None) if !secret.is_empty() => Some(digest(secret.as_bytes())),
                (None, Some(hex)) => {
                    let d = parse_hex_digest(hex);
                    if d.is_none() {
                        errors.push(format!(
                            "auth.token {name:?}: secret-sha256 is not 64 hex digits"
                        ));
                    }
                    d
                }
                _ => {
                    errors.push(format!(
                        "auth.token {name:?}: needs exactly one of a non-empty secret or secret-sha256"
                    ));
                    None
                }
            };
            if name.is_empty() || name.contains(char::is_whitespace) || name.contains(':') {
                errors.push(format!(
                    "auth.token {name:?}: a name must be non-empty, without spaces or ':'"
                ));
            }
            if names.contains(name) {
                errors.push(format!("auth.token {name:?}: defined twice"));
            }
            names.push(name.clone());
            if t.scopes.is_empty() {
                errors.push(format!(
                    "auth.token {name:?}: scopes is empty; give any of \"read\", \"write\", \"admin\""
                ));
            }
            let mut access = Access::default();
            for scope in &t.scopes {
                match scope {
                    Scope::Read => access.read = true,
                    Scope::Write => access.write = true,
                    Scope::Admin => access.admin = true,
                }
            }
            if let Some(digest) = digest {
                tokens.push(Token {
                    name: t.name,
                    digest,
                    access,
                });
            }
        }
        Auth {
            tokens,
            write_networks,
            problems: errors,
        }
    }

    /// What [`Auth::from_file`] found wrong, one line each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Auth is on once a token is defined.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// How many tokens are defined, for `/api/config`.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The access a bearer secret grants, if it is a token's.
    pub fn bearer(&self, secret: &[u8]) -> Option<Access> {
        let presented = digest(secret);
        // Every token is compared, so the time taken does not tell which
        // one matched, nor how much of a digest did.
        self.tokens
            .iter()
            .fold(None, |found, t| match same(&t.digest, &presented) {
                true => Some(t.access),
                false => found,
            })
    }

    /// The access `name` with `secret` grants (Basic auth, telnet `auth`).
    pub fn basic(&self, name: &[u8], secret: &[u8]) -> Option<Access> {
        let presented = digest(secret);
        self.tokens.iter().fold(None, |found, t| {
            // `&` rather than `&&`: both comparisons always run.
            match same(&t.digest, &presented) & (t.name.as_bytes() == name) {
                true => Some(t.access),
                false => found,
            }
        })
    }

    /// Whether a telnet peer may `put` without authenticating.
    pub fn write_network(&self, peer: IpAddr) -> bool {
        self.write_networks.iter().any(|n| n.contains(peer))
    }
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Compares two digests in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(toml_text: &str) -> (Auth, Vec<String>) {
        let file: AuthFile = toml::from_str(toml_text).expect("valid toml");
        let a = Auth::from_file(file);
        let errors = a.problems().to_vec();
        (a, errors)
    }

    const TOKENS: &str = r#"
        write-networks = ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
        [[token]]
        name = "grafana"
        secret = "s3cret"
        scopes = ["read"]
        [[token]]
        name = "ops"
        # a digest no test secret hashes to
        secret-sha256 = "6C1C6A4E9D4E1D3E4D8C9B5E0A0F3A2B1C0D9E8F7A6B5C4D3E2F1A0B9C8D7E6F"
        scopes = ["admin"]
    "#;

    #[test]
    fn tokens_match_by_secret_or_by_name_and_secret() {
        let (a, errors) = auth(TOKENS);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(a.enabled());
        let read = Access {
            read: true,
            ..Access::default()
        };
        assert_eq!(a.bearer(b"s3cret"), Some(read));
        assert_eq!(a.basic(b"grafana", b"s3cret"), Some(read));
        assert_eq!(a.basic(b"ops", b"s3cret"), None);
        assert_eq!(a.bearer(b"s3cre"), None);
        assert_eq!(a.bearer(b""), None);
    }

    #[test]
    fn a_sha256_secret_matches_its_preimage() {
        let hex: String = digest(b"admin-pass")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (a, errors) = auth(&format!(
            "[[token]]\nname = \"ops\"\nsecret-sha256 = \"{hex}\"\nscopes = [\"admin\"]"
        ));
        assert!(errors.is_empty(), "{errors:?}");
        let got = a.basic(b"ops", b"admin-pass").expect("matches");
        assert!(got.allows(Scope::Read) && got.allows(Scope::Write) && got.allows(Scope::Admin));
    }

    #[test]
    fn no_token_means_auth_off() {
        let (a, errors) = auth("write-networks = []");
        assert!(errors.is_empty());
        assert!(!a.enabled());
    }

    #[test]
    fn bad_tokens_are_reported_by_name_never_by_secret() {
        let (_, errors) = auth(
            r#"
            write-networks = ["10.0.0.0/33", "nowhere"]
            [[token]]
            name = "a"
            secret = "hunter2"
            secret-sha256 = "00"
            scopes = ["read"]
            [[token]]
            name = "b"
            secret-sha256 = "abc"
            scopes = []
            [[token]]
            name = "b"
            secret = "hunter3"
            scopes = ["write"]
            "#,
        );
        let text = errors.join("\n");
        assert_eq!(errors.len(), 6, "{text}");
        assert!(!text.contains("hunter"), "{text}");
        assert!(text.contains("\"10.0.0.0/33\" is not a network"), "{text}");
        assert!(
            text.contains("auth.token \"a\": needs exactly one"),
            "{text}"
        );
        assert!(text.contains("auth.token \"b\": defined twice"), "{text}");
        let (a, _) = auth(TOKENS);
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn unknown_scopes_and_keys_are_refused() {
        assert!(toml::from_str::<AuthFile>(
            "[[token]]\nname=\"x\"\nsecret=\"y\"\nscopes=[\"root\"]"
        )
        .is_err());
        assert!(toml::from_str::<AuthFile>("networks = []").is_err());
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let (a, _) = auth(TOKENS);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(a.write_network(ip("10.1.2.3")));
        assert!(a.write_network(ip("::ffff:10.1.2.3")));
        assert!(!a.write_network(ip("11.0.0.1")));
        assert!(a.write_network(ip("192.168.1.7")));
        assert!(!a.write_network(ip("192.168.1.8")));
        assert!(a.write_network(ip("fd12::1")));
        assert!(!a.write_network(ip("fe80::1")));
        let everything = Network::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains(ip("203.0.113.9")));
        assert!(!everything.contains(ip("::1")));
    }
}
