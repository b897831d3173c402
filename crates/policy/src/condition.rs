//! Condition operators (IAM User Guide, "Condition operators"), with the `...IfExists` suffix,
//! the `ForAllValues:`/`ForAnyValue:` set qualifiers, and `Null`.
//!
//! Rules that are easy to get wrong, from the guide: a key missing from the request makes a
//! condition false, except for negated operators (true), `...IfExists` (true) and `Null`;
//! several values for one key are ORed, but for a negated operator the condition holds only
//! when *none* match; `ForAllValues` over a missing or empty key is true.

use std::net::IpAddr;

use crate::context::Context;
use crate::document::PolicyError;
use crate::matching::wildcard;
use crate::variables::{has_variables, referenced_keys, substitute};

#[derive(Debug, Clone)]
pub(crate) struct Condition {
    operator: Operator,
    negated: bool,
    qualifier: Qualifier,
    if_exists: bool,
    key: String,
    values: Vec<PolicyValue>,
    /// Whether a value holds a policy variable, substituted per request.
    variables: bool,
}

/// A condition's value as written, and parsed once for the typed operators (a date, a number,
/// a CIDR block) so evaluating a request parses only the request's side.
#[derive(Debug, Clone)]
struct PolicyValue {
    text: String,
    parsed: Parsed,
}

#[derive(Debug, Clone, Copy)]
enum Parsed {
    /// Compared as text, or not parseable for the operator (it then matches nothing).
    Text,
    Number(f64),
    Date(i64),
    Cidr(IpAddr, u8),
}

impl PolicyValue {
    fn new(operator: Operator, text: String) -> Self {
        let parsed = match operator {
            Operator::Numeric(_) => text.parse().ok().map(Parsed::Number),
            Operator::Date(_) => parse_date(&text).map(Parsed::Date),
            Operator::IpAddress => {
                parse_cidr(&text).map(|(network, bits)| Parsed::Cidr(network, bits))
            }
            _ => Some(Parsed::Text),
        };
        Self {
            text,
            parsed: parsed.unwrap_or(Parsed::Text),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    Single,
    ForAllValues,
    ForAnyValue,
}

/// Operators in their positive form; `Condition::negated` records the `Not` variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Numeric(Ordering),
    Date(Ordering),
    Bool,
    BinaryEquals,
    IpAddress,
    ArnEquals,
    ArnLike,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ordering {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

impl Condition {
    /// Parses one `"Operator": {"key": value(s)}` entry.
    pub(crate) fn parse(
        operator: &str,
        key: &str,
        values: Vec<String>,
        variables: bool,
    ) -> Result<Self, PolicyError> {
        let (qualifier, rest) = if let Some(rest) = operator.strip_prefix("ForAllValues:") {
            (Qualifier::ForAllValues, rest)
        } else if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
            (Qualifier::ForAnyValue, rest)
        } else {
            (Qualifier::Single, operator)
        };
        let (name, if_exists) = match rest.strip_suffix("IfExists") {
            Some(name) if rest != "Null" => (name, true),
            _ => (rest, false),
        };
        let (operator, negated) = parse_operator(name)
            .ok_or_else(|| PolicyError::new(format!("Unknown condition operator {operator}")))?;
        if operator == Operator::Null && (if_exists || qualifier != Qualifier::Single) {
            return Err(PolicyError::new(format!(
                "Condition operator {operator:?} cannot be qualified"
            )));
        }
        if values.is_empty() {
            return Err(PolicyError::new(format!(
                "Condition {name} on {key} has no values"
            )));
        }
        let variables = variables && values.iter().any(|value| has_variables(value));
        // A value with a variable is checked once substituted, per request.
        for value in values
            .iter()
            .filter(|value| !(variables && has_variables(value)))
        {
            validate_value(operator, value).map_err(|detail| {
                PolicyError::new(format!("Condition {name} on {key}: {detail}"))
            })?;
        }
        Ok(Self {
            operator,
            negated,
            qualifier,
            if_exists,
            key: key.to_ascii_lowercase(),
            values: values
                .into_iter()
                .map(|text| PolicyValue::new(operator, text))
                .collect(),
            variables,
        })
    }

    /// The condition keys this condition reads: its own and its values' policy variables.
    pub(crate) fn keys_used(&self) -> impl Iterator<Item = String> + '_ {
        let in_values = self
            .values
            .iter()
            .filter(|_| self.variables)
            .flat_map(|value| referenced_keys(&value.text));
        std::iter::once(self.key.clone()).chain(in_values)
    }

    pub(crate) fn holds(&self, context: &Context) -> bool {
        let present = context.get(&self.key).filter(|values| !values.is_empty());
        if self.operator == Operator::Null {
            let absent = present.is_none();
            return self
                .values
                .iter()
                .any(|value| value.text.eq_ignore_ascii_case("true") == absent);
        }
        let Some(actual) = present else {
            return match self.qualifier {
                _ if self.if_exists => true,
                Qualifier::ForAllValues => true,
                Qualifier::ForAnyValue => false,
                Qualifier::Single => self.negated,
            };
        };
        // A value whose variable cannot be substituted matches nothing.
        let substituted: Vec<PolicyValue>;
        let values = if self.variables {
            substituted = self
                .values
                .iter()
                .filter_map(|value| {
                    if has_variables(&value.text) {
                        substitute(&value.text, context)
                            .map(|text| PolicyValue::new(self.operator, text))
                    } else {
                        Some(value.clone())
                    }
                })
                .collect();
            &substituted
        } else {
            &self.values
        };
        let matches_any_policy_value = |context_value: &String| {
            values
                .iter()
                .any(|policy_value| self.matches(policy_value, context_value))
        };
        // For a negated operator a context value "passes" when it matches no policy value.
        let passes =
            |context_value: &String| matches_any_policy_value(context_value) != self.negated;
        match self.qualifier {
            Qualifier::ForAllValues => actual.iter().all(passes),
            Qualifier::ForAnyValue => actual.iter().any(passes),
            Qualifier::Single => {
                let any_match = actual.iter().any(matches_any_policy_value);
                any_match != self.negated
            }
        }
    }

    fn matches(&self, policy: &PolicyValue, actual: &str) -> bool {
        let text = policy.text.as_str();
        match (self.operator, policy.parsed) {
            (Operator::StringEquals | Operator::ArnEquals | Operator::BinaryEquals, _) => {
                text == actual
            }
            (Operator::StringEqualsIgnoreCase, _) => text.to_lowercase() == actual.to_lowercase(),
            (Operator::StringLike | Operator::ArnLike, _) => wildcard(text, actual),
            (Operator::Bool, _) => text.eq_ignore_ascii_case(actual),
            (Operator::Numeric(ordering), Parsed::Number(policy)) => actual
                .parse::<f64>()
                .is_ok_and(|actual| compare(ordering, actual.partial_cmp(&policy))),
            (Operator::Date(ordering), Parsed::Date(policy)) => parse_date(actual)
                .is_some_and(|actual| compare(ordering, Some(actual.cmp(&policy)))),
            (Operator::IpAddress, Parsed::Cidr(network, bits)) => actual
                .parse::<IpAddr>()
                .is_ok_and(|address| cidr_contains(network, bits, address)),
            // A typed operator whose policy value did not parse (a substituted variable).
            (Operator::Numeric(_) | Operator::Date(_) | Operator::IpAddress, _) => false,
            (Operator::Null, _) => false,
        }
    }
}

fn compare(ordering: Ordering, actual_vs_policy: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let Some(result) = actual_vs_policy else {
        return false;
    };
    match ordering {
        Ordering::Equals => result == Equal,
        Ordering::LessThan => result == Less,
        Ordering::LessThanEquals => result != Greater,
        Ordering::GreaterThan => result == Greater,
        Ordering::GreaterThanEquals => result != Less,
    }
}

fn parse_operator(name: &str) -> Option<(Operator, bool)> {
    use Operator as O;
    use Ordering as R;
    Some(match name {
        "StringEquals" => (O::StringEquals, false),
        "StringNotEquals" => (O::StringEquals, true),
        "StringEqualsIgnoreCase" => (O::StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (O::StringEqualsIgnoreCase, true),
        "StringLike" => (O::StringLike, false),
        "StringNotLike" => (O::StringLike, true),
        "NumericEquals" => (O::Numeric(R::Equals), false),
        "NumericNotEquals" => (O::Numeric(R::Equals), true),
        "NumericLessThan" => (O::Numeric(R::LessThan), false),
        "NumericLessThanEquals" => (O::Numeric(R::LessThanEquals), false),
        "NumericGreaterThan" => (O::Numeric(R::GreaterThan), false),
        "NumericGreaterThanEquals" => (O::Numeric(R::GreaterThanEquals), false),
        "DateEquals" => (O::Date(R::Equals), false),
        "DateNotEquals" => (O::Date(R::Equals), true),
        "DateLessThan" => (O::Date(R::LessThan), false),
        "DateLessThanEquals" => (O::Date(R::LessThanEquals), false),
        "DateGreaterThan" => (O::Date(R::GreaterThan), false),
        "DateGreaterThanEquals" => (O::Date(R::GreaterThanEquals), false),
        "Bool" => (O::Bool, false),
        "BinaryEquals" => (O::BinaryEquals, false),
        "IpAddress" => (O::IpAddress, false),
        "NotIpAddress" => (O::IpAddress, true),
        "ArnEquals" => (O::ArnEquals, false),
        "ArnNotEquals" => (O::ArnEquals, true),
        "ArnLike" => (O::ArnLike, false),
        "ArnNotLike" => (O::ArnLike, true),
        "Null" => (O::Null, false),
        _ => return None,
    })
}

fn validate_value(operator: Operator, value: &str) -> Result<(), String> {
    let valid = match operator {
        Operator::Numeric(_) => value.parse::<f64>().is_ok(),
        Operator::Date(_) => parse_date(value).is_some(),
        Operator::Bool | Operator::Null => {
            value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
        }
        Operator::IpAddress => parse_cidr(value).is_some(),
        _ => true,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("invalid value {value:?} for {operator:?}"))
    }
}

/// ISO 8601 (`2026-01-01T00:00:00Z`, `2026-01-01`) or Unix epoch seconds, as IAM accepts.
/// Runs per request on `aws:CurrentTime`, so it works in a stack buffer.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    // `2026-01-01T00:00:00.5Z` -> `20260101T000000`: separators, fraction and zone dropped.
    let whole_seconds = text.split('.').next().unwrap_or_default();
    let mut compact = [0u8; 16];
    let mut len = 0;
    for byte in whole_seconds.bytes().filter(|b| *b != b'-' && *b != b':') {
        *compact.get_mut(len)? = byte;
        len += 1;
    }
    while len > 0 && compact[len - 1] == b'Z' {
        len -= 1;
    }
    let mut full = [0u8; 16];
    match len {
        8 => {
            full[..8].copy_from_slice(&compact[..8]);
            full[8..].copy_from_slice(b"T000000Z");
        }
        15 => {
            full[..15].copy_from_slice(&compact[..15]);
            full[15] = b'Z';
        }
        _ => return None,
    }
    atrest_sigv4::parse_amz_date(std::str::from_utf8(&full).ok()?)
}

fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        None => {
            let address = text.parse::<IpAddr>().ok()?;
            (address, if address.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((address, bits))
}

fn cidr_contains(network: IpAddr, bits: u8, address: IpAddr) -> bool {
    let (network, address, width) = match (network, address) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (u128::from(u32::from(n)), u128::from(u32::from(a)), 32),
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (network >> shift) == (address >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(operator: &str, key: &str, values: &[&str]) -> Condition {
        Condition::parse(
            operator,
            key,
            values.iter().map(|v| (*v).to_owned()).collect(),
            true,
        )
        .unwrap()
    }

    fn context(pairs: &[(&str, &[&str])]) -> Context {
        let mut context = Context::new();
        for (key, values) in pairs {
            context.set_many(key, values.iter().map(|v| (*v).to_owned()));
        }
        context
    }

    #[test]
    fn missing_keys_follow_the_guide() {
        let empty = Context::new();
        assert!(!condition("StringEquals", "k", &["v"]).holds(&empty));
        assert!(condition("StringNotEquals", "k", &["v"]).holds(&empty));
        assert!(condition("StringEqualsIfExists", "k", &["v"]).holds(&empty));
        assert!(condition("ForAllValues:StringEquals", "k", &["v"]).holds(&empty));
        assert!(!condition("ForAnyValue:StringEquals", "k", &["v"]).holds(&empty));
        assert!(condition("Null", "k", &["true"]).holds(&empty));
        assert!(!condition("Null", "k", &["false"]).holds(&empty));
    }

    #[test]
    fn negated_operators_need_every_value_to_differ() {
        let prod = context(&[("aws:PrincipalTag/role", &["audit"])]);
        assert!(
            !condition(
                "StringNotEquals",
                "aws:PrincipalTag/role",
                &["audit", "security"]
            )
            .holds(&prod)
        );
        assert!(
            condition(
                "StringEquals",
                "aws:PrincipalTag/role",
                &["audit", "security"]
            )
            .holds(&prod)
        );
    }

    #[test]
    fn set_qualifiers_over_encryption_context_keys() {
        let keys = context(&[("kms:EncryptionContextKeys", &["Department", "Project"])]);
        let all = condition(
            "ForAllValues:StringEquals",
            "kms:EncryptionContextKeys",
            &["Department", "Project", "Cost"],
        );
        assert!(all.holds(&keys));
        let narrow = condition(
            "ForAllValues:StringEquals",
            "kms:EncryptionContextKeys",
            &["Department"],
        );
        assert!(!narrow.holds(&keys));
        let any = condition(
            "ForAnyValue:StringEquals",
            "kms:EncryptionContextKeys",
            &["Project"],
        );
        assert!(any.holds(&keys));
    }

    #[test]
    fn typed_operators() {
        let facts = context(&[
            ("aws:SourceIp", &["192.0.2.77"]),
            ("aws:SecureTransport", &["false"]),
            ("aws:CurrentTime", &["2026-11-29T12:00:00Z"]),
            ("n", &["10"]),
        ]);
        assert!(condition("IpAddress", "aws:SourceIp", &["192.0.2.0/24"]).holds(&facts));
        assert!(condition("NotIpAddress", "aws:SourceIp", &["203.0.113.0/24"]).holds(&facts));
        assert!(condition("Bool", "aws:SecureTransport", &["false"]).holds(&facts));
        assert!(
            condition("DateLessThan", "aws:CurrentTime", &["2027-01-01T00:00:00Z"]).holds(&facts)
        );
        assert!(!condition("DateGreaterThan", "aws:CurrentTime", &["2027-01-01"]).holds(&facts));
        assert!(condition("NumericLessThanEquals", "n", &["10"]).holds(&facts));
        assert!(!condition("NumericLessThan", "n", &["10"]).holds(&facts));
        assert!(condition("StringLike", "aws:CurrentTime", &["2026-*"]).holds(&facts));
    }

    #[test]
    fn bad_operators_and_values_are_malformed() {
        let parse = |op: &str, value: &str| Condition::parse(op, "k", vec![value.to_owned()], true);
        assert!(parse("StringEqualz", "v").is_err());
        assert!(parse("NumericEquals", "ten").is_err());
        assert!(parse("DateLessThan", "tomorrow").is_err());
        assert!(parse("IpAddress", "300.1.1.1/8").is_err());
        assert!(parse("Bool", "yes").is_err());
        assert!(parse("NullIfExists", "true").is_err());
    }
}
