//! Identifier newtypes: trace, span, block and tenant IDs.
//!
//! Each type validates on construction, so code past the receivers never
//! sees a trace ID of the wrong length or a tenant that would escape its
//! object-store prefix.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A 16-byte W3C / OTLP trace ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// Wraps raw bytes.
    pub const fn new(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Builds from a slice that must be exactly 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 16] = bytes.try_into().map_err(|_| Error::InvalidInput {
            message: format!("trace ID must be 16 bytes, got {}", bytes.len()),
        })?;
        Ok(Self(array))
    }

    /// Parses a hex trace ID the way Tempo does: case-insensitive, at most 32
    /// digits, shorter IDs left-padded with zeros (64-bit Zipkin/Jaeger IDs
    /// arrive as 16 digits).
    pub fn from_hex(text: &str) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidInput {
            message: format!("invalid trace ID {text:?}: {why}"),
        };
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.len() > 32 {
            return Err(invalid("longer than 32 hex digits"));
        }
        let mut padded = [b'0'; 32];
        padded[32 - text.len()..].copy_from_slice(text.as_bytes());
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(padded, &mut bytes).map_err(|_| invalid("not hexadecimal"))?;
        Ok(Self(bytes))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lower-case, 32-digit hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Hex without leading zeros, as Tempo prints trace IDs in search
    /// results and compares them in TraceQL (`trace:id`, `link:traceID`).
    pub fn to_short_hex(&self) -> String {
        short_hex(&self.0)
    }
}

/// Lowercase hex of `bytes` without leading zeros (see
/// [`TraceId::to_short_hex`]).
pub fn short_hex(bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    hex.trim_start_matches('0').to_owned()
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}

impl FromStr for TraceId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_hex(s)
    }
}

/// An 8-byte OTLP span ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpanId([u8; 8]);

impl SpanId {
    /// Length in bytes.
    pub const LEN: usize = 8;

    /// Wraps raw bytes.
    pub const fn new(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// Builds from a slice that must be exactly 8 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 8] = bytes.try_into().map_err(|_| Error::InvalidInput {
            message: format!("span ID must be 8 bytes, got {}", bytes.len()),
        })?;
        Ok(Self(array))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", hex::encode(self.0))
    }
}

/// A block's ID: a UUIDv7, so block IDs sort by creation time and listing a
/// tenant's prefix returns blocks oldest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlockId(Uuid);

impl BlockId {
    /// A fresh, time-ordered ID.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// The wrapped UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The smallest ID a block created at `unix_millis` can have: listing
    /// from it finds every block created since.
    pub fn first_at_unix_millis(unix_millis: u64) -> Self {
        Self(uuid::Builder::from_unix_timestamp_millis(unix_millis, &[0; 10]).into_uuid())
    }

    /// When the ID was made, Unix milliseconds (UUIDv7 carries it).
    pub fn created_unix_millis(&self) -> Option<u64> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        Some(secs * 1000 + u64::from(nanos) / 1_000_000)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({})", self.0.hyphenated())
    }
}

impl FromStr for BlockId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|e| Error::InvalidInput {
                message: format!("invalid block ID {s:?}: {e}"),
            })
    }
}

/// A tenant, from the `X-Scope-OrgID` header (Tempo's multi-tenancy).
///
/// The rules are Tempo's (and Cortex's): 1–150 characters from
/// `[A-Za-z0-9!-_.*'()]`, not `.` or `..`. They keep a tenant ID a single,
/// safe object-store path segment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// The tenant used when a request carries no `X-Scope-OrgID`.
    pub const DEFAULT: &'static str = "single-tenant";

    /// Validates and wraps a tenant ID.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let invalid = |why: &str| Error::InvalidInput {
            message: format!("invalid tenant ID {id:?}: {why}"),
        };
        if id.is_empty() {
            return Err(invalid("empty"));
        }
        if id.len() > 150 {
            return Err(invalid("longer than 150 characters"));
        }
        if id == "." || id == ".." {
            return Err(invalid("reserved path segment"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
        if !id.chars().all(allowed) {
            return Err(invalid(
                "allowed characters are A-Z a-z 0-9 ! - _ . * ' ( )",
            ));
        }
        Ok(Self(id))
    }

    /// The tenant an `X-Scope-OrgID` header (or `x-scope-orgid` gRPC
    /// metadata) names. Absent or empty means the default tenant, as in
    /// Tempo: some clients always send the header, empty when unset.
    pub fn from_header(value: Option<&[u8]>) -> Result<Self> {
        let Some(raw) = value else {
            return Ok(Self::default_tenant());
        };
        let text = std::str::from_utf8(raw).map_err(|_| Error::InvalidInput {
            message: "X-Scope-OrgID is not UTF-8".to_owned(),
        })?;
        match text.trim() {
            "" => Ok(Self::default_tenant()),
            id => Self::new(id),
        }
    }

    /// The default tenant, `single-tenant`.
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::default_tenant()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_trace_ids_are_left_padded_like_tempo() {
        let id = TraceId::from_hex("ABCDEF0123456789").unwrap();
        assert_eq!(id.to_hex(), "0000000000000000abcdef0123456789");
        assert_eq!(TraceId::from_hex("1").unwrap().as_bytes()[15], 1);
    }

    #[test]
    fn malformed_trace_ids_are_rejected() {
        assert!(TraceId::from_hex("").is_err());
        assert!(TraceId::from_hex("xyz").is_err());
        assert!(TraceId::from_hex(&"a".repeat(33)).is_err());
        assert!(TraceId::from_slice(&[0; 15]).is_err());
    }

    #[test]
    fn an_absent_or_empty_tenant_header_is_the_default_tenant() {
        assert_eq!(
            TenantId::from_header(None).unwrap(),
            TenantId::default_tenant()
        );
        assert_eq!(
            TenantId::from_header(Some(b"")).unwrap(),
            TenantId::default_tenant()
        );
        assert_eq!(
            TenantId::from_header(Some(b"  ")).unwrap(),
            TenantId::default_tenant()
        );
        assert_eq!(TenantId::from_header(Some(b" a ")).unwrap().as_str(), "a");
        assert!(TenantId::from_header(Some(b"a/b")).is_err());
        assert!(TenantId::from_header(Some(&[0xff])).is_err());
    }

    #[test]
    fn tenant_ids_follow_tempo_rules() {
        assert!(TenantId::new("team-a_1.prod").is_ok());
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("..").is_err());
        assert!(TenantId::new("a/b").is_err());
        assert!(TenantId::new("x".repeat(151)).is_err());
    }

    #[test]
    fn block_ids_sort_by_creation() {
        let first = BlockId::new_v7();
        let second = BlockId::new_v7();
        assert!(first < second);
        assert_eq!(first.to_string().parse::<BlockId>().unwrap(), first);
    }
}
