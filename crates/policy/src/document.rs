//! Parsing and validating a policy document, and evaluating its statements.

use serde_json::{Map, Value};

use crate::condition::Condition;
use crate::{Principal, RequestFacts, Verdict};
use crate::{matching, variables};

/// Key policies are limited to 32 KiB (AWS KMS quota).
pub const MAX_POLICY_BYTES: usize = 32 * 1024;

/// Why a policy document is not acceptable; the message names the fault, as AWS's
/// `MalformedPolicyDocumentException` does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);

impl PolicyError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A parsed, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
    /// Lower-cased condition keys the statements use (in conditions or as policy variables), so
    /// callers can skip costly facts. Sorted and deduplicated; a policy reads a handful, so a
    /// scan beats hashing the name.
    condition_keys: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    principals: Principals,
    actions: Patterns,
    resources: Patterns,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
enum Principals {
    /// Identity policies have no Principal element: they apply to their owner.
    Owner,
    Listed(Vec<PrincipalEntry>),
    AllExcept(Vec<PrincipalEntry>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalEntry {
    Anyone,
    Account(String),
    Arn(String),
    /// A user ARN resolved, when the policy was stored, to the unique id the user had then
    /// (as AWS binds policies to principal ids): a later user of the same name is another
    /// principal and does not match.
    BoundArn {
        arn: String,
        id: String,
    },
    /// A principal's unique id (`AIDA...`), what AWS shows for a deleted principal.
    UniqueId(String),
    /// Service or federated principals: valid in a document, never an atrest caller.
    Foreign,
}

#[derive(Debug, Clone)]
struct Patterns {
    negated: bool,
    patterns: Vec<String>,
    /// Whether a pattern holds a policy variable, substituted per request.
    variables: bool,
}

/// How the caller matched a statement's Principal element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrincipalMatch {
    No,
    Direct,
    Account,
}

impl Policy {
    /// Parses a resource (key) policy: every statement must name principals.
    pub fn parse_resource_policy(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text, true)
    }

    /// Parses an identity (IAM user) policy: statements must not name principals.
    pub fn parse_identity_policy(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text, false)
    }

    fn parse(text: &str, resource_policy: bool) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::new(format!(
                "Policy exceeds the maximum size of {MAX_POLICY_BYTES} bytes"
            )));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|error| PolicyError::new(format!("Policy is not valid JSON: {error}")))?;
        let document = value
            .as_object()
            .ok_or_else(|| PolicyError::new("Policy must be a JSON object"))?;
        for key in document.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(PolicyError::new(format!(
                    "Policy has an unknown element {key}"
                )));
            }
        }
        // Policy variables came with the 2012-10-17 language; before it `${...}` is text.
        let variables = match document.get("Version").map(Value::as_str) {
            Some(Some("2012-10-17")) => true,
            None | Some(Some("2008-10-17")) => false,
            _ => {
                return Err(PolicyError::new(
                    "Version must be \"2012-10-17\" or \"2008-10-17\"",
                ));
            }
        };
        let statements = match document.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(item @ Value::Object(_)) => vec![item],
            _ => return Err(PolicyError::new("Policy must have a Statement element")),
        };
        if statements.is_empty() {
            return Err(PolicyError::new("Policy must have at least one statement"));
        }
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(index, value)| {
                Statement::parse(value, resource_policy, variables)
                    .map_err(|e| e.in_statement(index, value))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut condition_keys: Vec<String> =
            statements.iter().flat_map(Statement::keys_used).collect();
        condition_keys.sort_unstable();
        condition_keys.dedup();
        Ok(Self {
            statements,
            condition_keys,
        })
    }

    /// Every Resource (or NotResource) pattern, so a service can check they name its resources.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.statements
            .iter()
            .flat_map(|statement| statement.resources.patterns.iter().map(String::as_str))
    }

    /// Every Action (or NotAction) pattern.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.statements
            .iter()
            .flat_map(|statement| statement.actions.patterns.iter().map(String::as_str))
    }

    /// Whether any statement has a Condition or a policy variable: if none does, no request
    /// context is needed.
    pub fn has_conditions(&self) -> bool {
        !self.condition_keys.is_empty()
    }

    /// Whether any condition uses `key` (compared case-insensitively, as IAM does).
    pub fn mentions(&self, key: &str) -> bool {
        self.condition_keys
            .iter()
            .any(|known| known.eq_ignore_ascii_case(key))
    }

    /// Evaluates as a resource policy: principals are matched against the caller.
    pub fn evaluate(&self, request: &RequestFacts<'_>) -> Verdict {
        let mut verdict = Verdict::default();
        for statement in &self.statements {
            // The principal first: it is the cheapest test, and most statements of a real key
            // policy name someone else, so their conditions are never evaluated.
            let principal = statement.principals.matching(request.principal);
            if principal == PrincipalMatch::No || !statement.applies(request) {
                continue;
            }
            match (statement.effect, principal) {
                (_, PrincipalMatch::No) => {}
                (Effect::Deny, _) => verdict.explicit_deny = true,
                (Effect::Allow, PrincipalMatch::Direct) => verdict.allow = true,
                (Effect::Allow, PrincipalMatch::Account) => verdict.allow_account = true,
            }
        }
        verdict
    }

    /// Evaluates as the caller's own identity policy.
    pub fn evaluate_identity(&self, request: &RequestFacts<'_>) -> Verdict {
        let mut verdict = Verdict::default();
        for statement in &self.statements {
            if statement.applies(request) {
                match statement.effect {
                    Effect::Deny => verdict.explicit_deny = true,
                    Effect::Allow => verdict.allow = true,
                }
            }
        }
        verdict
    }
}

impl PolicyError {
    fn in_statement(self, index: usize, value: &Value) -> Self {
        let sid = value
            .get("Sid")
            .and_then(Value::as_str)
            .map(|sid| format!(" (Sid {sid})"))
            .unwrap_or_default();
        PolicyError(format!("Statement {}{sid}: {}", index + 1, self.0))
    }
}

impl Statement {
    fn parse(value: &Value, resource_policy: bool, variables: bool) -> Result<Self, PolicyError> {
        let object = value
            .as_object()
            .ok_or_else(|| PolicyError::new("a statement must be a JSON object"))?;
        for key in object.keys() {
            let known = [
                "Sid",
                "Effect",
                "Principal",
                "NotPrincipal",
                "Action",
                "NotAction",
                "Resource",
                "NotResource",
                "Condition",
            ];
            if !known.contains(&key.as_str()) {
                return Err(PolicyError::new(format!("unknown element {key}")));
            }
        }
        if let Some(sid) = object.get("Sid")
            && !sid.is_string()
        {
            return Err(PolicyError::new("Sid must be a string"));
        }
        let effect = match object.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => return Err(PolicyError::new("Effect must be \"Allow\" or \"Deny\"")),
        };
        let principals = parse_principals(object, resource_policy)?;
        let actions = parse_patterns(object, "Action", "NotAction")?;
        let mut resources = parse_patterns(object, "Resource", "NotResource")?;
        resources.variables = variables
            && resources
                .patterns
                .iter()
                .any(|p| variables::has_variables(p));
        let conditions = match object.get("Condition") {
            None => Vec::new(),
            Some(Value::Object(operators)) => parse_conditions(operators, variables)?,
            Some(_) => return Err(PolicyError::new("Condition must be an object")),
        };
        Ok(Self {
            effect,
            principals,
            actions,
            resources,
            conditions,
        })
    }

    /// The condition keys this statement reads: its conditions' and its policy variables'.
    fn keys_used(&self) -> impl Iterator<Item = String> + '_ {
        let in_conditions = self.conditions.iter().flat_map(Condition::keys_used);
        let in_resources = self
            .resources
            .patterns
            .iter()
            .filter(|_| self.resources.variables)
            .flat_map(|pattern| variables::referenced_keys(pattern));
        in_conditions.chain(in_resources)
    }

    fn applies(&self, request: &RequestFacts<'_>) -> bool {
        let resource_matches = |pattern: &str| {
            if self.resources.variables && variables::has_variables(pattern) {
                variables::substitute(pattern, request.context)
                    .is_some_and(|pattern| matching::wildcard(&pattern, request.resource))
            } else {
                matching::wildcard(pattern, request.resource)
            }
        };
        self.actions
            .matches(|pattern| matching::action(pattern, request.action))
            && self.resources.matches(resource_matches)
            && self
                .conditions
                .iter()
                .all(|condition| condition.holds(request.context))
    }
}

impl Patterns {
    fn matches(&self, test: impl Fn(&str) -> bool) -> bool {
        self.patterns.iter().any(|pattern| test(pattern)) != self.negated
    }
}

impl Principals {
    fn matching(&self, caller: &Principal) -> PrincipalMatch {
        match self {
            Principals::Owner => PrincipalMatch::Direct,
            Principals::Listed(entries) => entries
                .iter()
                .map(|entry| entry.matching(caller))
                .max_by_key(rank)
                .unwrap_or(PrincipalMatch::No),
            Principals::AllExcept(entries) => {
                let excluded = entries
                    .iter()
                    .any(|entry| entry.matching(caller) != PrincipalMatch::No);
                if excluded {
                    PrincipalMatch::No
                } else {
                    PrincipalMatch::Direct
                }
            }
        }
    }
}

fn rank(matched: &PrincipalMatch) -> u8 {
    match matched {
        PrincipalMatch::No => 0,
        PrincipalMatch::Account => 1,
        PrincipalMatch::Direct => 2,
    }
}

impl PrincipalEntry {
    fn parse(text: &str) -> Result<Self, PolicyError> {
        if text == "*" {
            return Ok(PrincipalEntry::Anyone);
        }
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(PrincipalEntry::Account(text.to_owned()));
        }
        if is_unique_id(text) {
            return Ok(PrincipalEntry::UniqueId(text.to_owned()));
        }
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", "aws", "iam", "", account, "root"] => {
                Ok(PrincipalEntry::Account((*account).to_owned()))
            }
            ["arn", "aws", "iam" | "sts", "", _, resource] if !resource.is_empty() => {
                Ok(PrincipalEntry::Arn(text.to_owned()))
            }
            _ => Err(PolicyError::new(format!("invalid principal {text:?}"))),
        }
    }

    fn matching(&self, caller: &Principal) -> PrincipalMatch {
        match self {
            PrincipalEntry::Anyone => PrincipalMatch::Direct,
            PrincipalEntry::Account(account) if **account == *caller.account => {
                if caller.is_root() {
                    PrincipalMatch::Direct
                } else {
                    PrincipalMatch::Account
                }
            }
            PrincipalEntry::Arn(arn) if **arn == *caller.arn => PrincipalMatch::Direct,
            PrincipalEntry::BoundArn { arn, id }
                if **arn == *caller.arn && caller.unique_id.as_deref() == Some(id.as_str()) =>
            {
                PrincipalMatch::Direct
            }
            PrincipalEntry::UniqueId(id) if caller.unique_id.as_deref() == Some(id.as_str()) => {
                PrincipalMatch::Direct
            }
            _ => PrincipalMatch::No,
        }
    }
}

/// IAM's unique user id form: `AIDA` and 16 or more base32 characters.
fn is_unique_id(text: &str) -> bool {
    text.strip_prefix("AIDA").is_some_and(|rest| {
        rest.len() >= 16
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    })
}

impl Policy {
    /// The IAM user ARNs its Principal and NotPrincipal elements name (to resolve to ids
    /// when the policy is stored).
    pub fn user_principal_arns(&self) -> Vec<&str> {
        let mut arns: Vec<&str> = self
            .statements
            .iter()
            .filter_map(|statement| match &statement.principals {
                Principals::Listed(entries) | Principals::AllExcept(entries) => Some(entries),
                Principals::Owner => None,
            })
            .flatten()
            .filter_map(|entry| match entry {
                PrincipalEntry::Arn(arn) if arn.contains(":user/") => Some(arn.as_str()),
                _ => None,
            })
            .collect();
        arns.sort_unstable();
        arns.dedup();
        arns
    }

    /// This policy with each user ARN in `ids` bound to that unique id: it then matches only
    /// the user who had that id when the policy was stored.
    pub fn bind_principals(&self, ids: &std::collections::BTreeMap<String, String>) -> Policy {
        let mut bound = self.clone();
        if ids.is_empty() {
            return bound;
        }
        for statement in &mut bound.statements {
            let entries = match &mut statement.principals {
                Principals::Listed(entries) | Principals::AllExcept(entries) => entries,
                Principals::Owner => continue,
            };
            for entry in entries.iter_mut() {
                if let PrincipalEntry::Arn(arn) = entry
                    && let Some(id) = ids.get(arn.as_str())
                {
                    *entry = PrincipalEntry::BoundArn {
                        arn: std::mem::take(arn),
                        id: id.clone(),
                    };
                }
            }
        }
        bound
    }
}

fn parse_principals(
    object: &Map<String, Value>,
    resource_policy: bool,
) -> Result<Principals, PolicyError> {
    let (value, negated) = match (object.get("Principal"), object.get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(PolicyError::new("has both Principal and NotPrincipal")),
        (Some(value), None) => (value, false),
        (None, Some(value)) => (value, true),
        (None, None) if resource_policy => return Err(PolicyError::new("has no Principal")),
        (None, None) => return Ok(Principals::Owner),
    };
    if !resource_policy {
        return Err(PolicyError::new(
            "an identity policy cannot name a Principal",
        ));
    }
    let entries = match value {
        Value::String(text) if text == "*" => vec![PrincipalEntry::Anyone],
        Value::Object(kinds) if !kinds.is_empty() => {
            let mut entries = Vec::new();
            for (kind, names) in kinds {
                for name in strings(names, kind)? {
                    entries.push(match kind.as_str() {
                        "AWS" => PrincipalEntry::parse(&name)?,
                        "Service" | "Federated" | "CanonicalUser" => PrincipalEntry::Foreign,
                        other => {
                            return Err(PolicyError::new(format!(
                                "unknown principal type {other}"
                            )));
                        }
                    });
                }
            }
            entries
        }
        _ => {
            return Err(PolicyError::new(
                "Principal must be \"*\" or an object such as {\"AWS\": ...}",
            ));
        }
    };
    Ok(if negated {
        Principals::AllExcept(entries)
    } else {
        Principals::Listed(entries)
    })
}

fn parse_patterns(
    object: &Map<String, Value>,
    positive: &str,
    negative: &str,
) -> Result<Patterns, PolicyError> {
    match (object.get(positive), object.get(negative)) {
        (Some(_), Some(_)) => Err(PolicyError::new(format!(
            "has both {positive} and {negative}"
        ))),
        (Some(value), None) => Ok(Patterns {
            negated: false,
            patterns: non_empty(strings(value, positive)?, positive)?,
            variables: false,
        }),
        (None, Some(value)) => Ok(Patterns {
            negated: true,
            patterns: non_empty(strings(value, negative)?, negative)?,
            variables: false,
        }),
        (None, None) => Err(PolicyError::new(format!("has no {positive} or {negative}"))),
    }
}

fn parse_conditions(
    operators: &Map<String, Value>,
    variables: bool,
) -> Result<Vec<Condition>, PolicyError> {
    let mut conditions = Vec::new();
    for (operator, keys) in operators {
        let keys = keys.as_object().ok_or_else(|| {
            PolicyError::new(format!("Condition {operator} must map keys to values"))
        })?;
        for (key, values) in keys {
            conditions.push(Condition::parse(
                operator,
                key,
                strings(values, key)?,
                variables,
            )?);
        }
    }
    Ok(conditions)
}

/// A string, a bool or a number, or an array of them, as IAM accepts for values.
fn strings(value: &Value, element: &str) -> Result<Vec<String>, PolicyError> {
    let scalar = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| {
                scalar(item).ok_or_else(|| {
                    PolicyError::new(format!("{element} has a value that is not a string"))
                })
            })
            .collect(),
        other => scalar(other).map(|text| vec![text]).ok_or_else(|| {
            PolicyError::new(format!("{element} must be a string or an array of strings"))
        }),
    }
}

fn non_empty(values: Vec<String>, element: &str) -> Result<Vec<String>, PolicyError> {
    if values.is_empty() {
        Err(PolicyError::new(format!("{element} is empty")))
    } else {
        Ok(values)
    }
}
