//! Durations as people write them in YAML (`500ms`, `30s`, `5m`, `1h30m`).
//!
//! The wire form is a string, as in Gateway API and most Kubernetes tooling; the schema checks
//! its shape with CEL so `kubectl apply` refuses `5 minutes` with a readable message, and
//! [`Duration::parse`] turns it into a [`std::time::Duration`] for the code that uses it.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The CEL rule and message attached to every duration field.
pub const DURATION_RULE: &str = "self.matches('^([0-9]{1,9}(ms|s|m|h))+$')";
/// What the API server says when a duration does not parse.
pub const DURATION_MESSAGE: &str = "must be a duration made of whole numbers with units ms, s, m or h, such as 500ms, 30s, 5m or 1h30m";

/// A duration written as a string, such as `30s`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(pub String);

/// Why a duration string could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {DURATION_MESSAGE}")]
pub struct DurationError {
    input: String,
}

impl Duration {
    /// Builds a duration from its wire form without checking it.
    pub fn from_static(s: &str) -> Self {
        Self(s.to_owned())
    }

    /// Parses the wire form (`1h30m`, `250ms`) into a [`std::time::Duration`].
    pub fn parse(&self) -> Result<std::time::Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `1h30m`, `250ms`, `10s`: one or more whole numbers, each followed by a unit.
pub fn parse_duration(input: &str) -> Result<std::time::Duration, DurationError> {
    let err = || DurationError {
        input: input.to_owned(),
    };
    let mut rest = input;
    let mut total = std::time::Duration::ZERO;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (std::time::Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (std::time::Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (std::time::Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (std::time::Duration::from_secs(3600), 1)
        } else {
            return Err(err());
        };
        rest = &rest[len..];
        let part = unit.checked_mul(u32::try_from(n).map_err(|_| err())?);
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(err)?;
    }
    Ok(total)
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{"rule": DURATION_RULE, "message": DURATION_MESSAGE}],
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as D;

    #[test]
    fn parses_the_forms_people_write() {
        let cases = [
            ("500ms", D::from_millis(500)),
            ("30s", D::from_secs(30)),
            ("5m", D::from_secs(300)),
            ("1h30m", D::from_secs(5400)),
            ("1m30s250ms", D::from_millis(90_250)),
            ("0s", D::ZERO),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_what_the_schema_refuses() {
        for input in [
            "",
            "5",
            "s",
            "5 minutes",
            "1.5s",
            "-1s",
            "1d",
            "10sm",
            "9999999999s",
        ] {
            assert!(parse_duration(input).is_err(), "{input:?} should not parse");
        }
    }
}
