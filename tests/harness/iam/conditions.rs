//! IAM conditions, the subset the templates use: the operators (`StringEquals`, `StringNotEquals`,
//! `StringLike`, `StringNotLike`, `ArnEquals`, `ArnLike`, `Null`, with the `ForAllValues:` and
//! `ForAnyValue:` qualifiers), the condition keys (a key is known when `calls.rs` puts it in the
//! context of every request that can carry it), IAM's wildcard matching, and whether a statement's
//! condition holds in a request's context. An unknown operator or key is an error, never an answer.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::policy::strings;

/// The request context: condition key (lower case) -> values. A key that is absent is not in it.
pub(super) type Context = BTreeMap<String, Vec<String>>;

const KNOWN_KEYS: &[&str] = &[
    "aws:tagkeys",
    "ec2:createaction",
    "iam:passedtoservice",
    "aws:resourceaccount",
    // S3: the account that owns the bucket a request is about.
    "s3:resourceaccount",
    "aws:resourceorgid",
    "aws:resourceorgpaths",
    "aws:principalarn",
    "aws:principalorgid",
    "sts:externalid",
    // ARC zonal shift: the managed resource a request names (its ARN).
    "arc-zonal-shift:resourceidentifier",
    // Auto Scaling's UpdateAutoScalingGroup: present only when the request sets them.
    "autoscaling:launchconfigurationname",
    "autoscaling:launchtemplateversionspecified",
    "autoscaling:instancetypes",
    "autoscaling:minsize",
    "autoscaling:maxsize",
    "autoscaling:vpczoneidentifiers",
];
const KNOWN_KEY_PREFIXES: &[&str] =
    &["aws:resourcetag/", "aws:requesttag/", "autoscaling:resourcetag/", "elasticloadbalancing:resourcetag/"];
const OPERATORS: [&str; 7] =
    ["StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "ArnEquals", "ArnLike", "Null"];

fn known_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    KNOWN_KEYS.contains(&k.as_str()) || KNOWN_KEY_PREFIXES.iter().any(|p| k.starts_with(p) && k.len() > p.len())
}

/// The qualifier and operator of a condition block's name (`ForAnyValue:StringLike`).
fn operator(name: &str) -> Result<(Option<&str>, &str), String> {
    let (set, op) = match name.split_once(':') {
        Some((set, op)) => (Some(set), op),
        None => (None, name),
    };
    if !OPERATORS.contains(&op) || set.is_some_and(|s| !["ForAnyValue", "ForAllValues"].contains(&s)) {
        return Err(format!("unknown condition operator {name}"));
    }
    if op == "Null" && set.is_some() {
        return Err(format!("unknown condition operator {name}"));
    }
    Ok((set, op))
}

pub(super) fn validate_condition(c: &Json) -> Result<(), String> {
    let blocks = c.as_object().ok_or_else(|| format!("Condition is not a mapping: {c}"))?;
    for (name, block) in blocks {
        operator(name)?;
        for key in block.as_object().ok_or_else(|| format!("{name}: not a mapping of keys"))?.keys() {
            if !known_key(key) {
                return Err(format!("unknown condition key {key}"));
            }
        }
    }
    Ok(())
}

/// IAM's wildcard matching (`StringLike`, `Resource`, `Action`): `*` any run of characters, `?` one.
pub fn glob(pattern: &str, s: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let mut matched = vec![false; s.len() + 1];
    matched[0] = true;
    for c in pattern.chars() {
        let mut next = vec![false; s.len() + 1];
        if c == '*' {
            let mut any = false;
            for j in 0..=s.len() {
                any |= matched[j];
                next[j] = any;
            }
        } else {
            for j in 1..=s.len() {
                next[j] = matched[j - 1] && (c == '?' || c == s[j - 1]);
            }
        }
        matched = next;
    }
    matched[s.len()]
}

pub(super) fn action_matches(pattern: &str, action: &str) -> bool {
    glob(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// Whether one condition block holds in `context`; `Err` for what the evaluator does not know.
pub(super) fn block_holds(name: &str, key: &str, wanted: &Json, context: &Context) -> Result<bool, String> {
    let (set, op) = operator(name)?;
    if !known_key(key) {
        return Err(format!("unknown condition key {key}"));
    }
    let wanted = strings(wanted);
    let have = context.get(&key.to_ascii_lowercase());
    if op == "Null" {
        let absent = have.is_none_or(|v| v.is_empty());
        return match wanted.as_slice() {
            [w] if w == "true" => Ok(absent),
            [w] if w == "false" => Ok(!absent),
            _ => Err(format!("Null takes true or false, got {wanted:?}")),
        };
    }
    let negated = op.contains("Not");
    let one = |v: &String| {
        wanted.iter().any(|w| match op {
            "StringEquals" | "StringNotEquals" => w == v,
            _ => glob(w, v),
        })
    };
    let values: &[String] = have.map(Vec::as_slice).unwrap_or(&[]);
    Ok(match (set, negated) {
        (Some("ForAllValues"), false) => values.iter().all(one),
        (Some("ForAllValues"), true) => values.iter().all(|v| !one(v)),
        (Some(_), false) => values.iter().any(one),
        (Some(_), true) => values.iter().any(|v| !one(v)),
        // A plain operator on an absent key: false, its negation true.
        (None, false) => values.iter().any(one),
        (None, true) => !values.iter().any(one),
    })
}

/// Why a statement's condition does not hold (`None`: it holds).
pub(super) fn condition_fails(c: Option<&Json>, context: &Context) -> Result<Option<String>, String> {
    let Some(c) = c else { return Ok(None) };
    for (name, block) in c.as_object().ok_or("Condition is not a mapping")? {
        for (key, wanted) in block.as_object().ok_or("condition block is not a mapping")? {
            if !block_holds(name, key, wanted, context)? {
                let have = context.get(&key.to_ascii_lowercase());
                return Ok(Some(format!("{name} {key} {wanted} (the request has {have:?})")));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wildcards_match_whole_strings_and_actions_ignore_case() {
        assert!(glob("arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:us-east-1:1:instance/i-1"));
        assert!(glob("*", "") && glob("a*", "a") && glob("*b", "ab") && glob("a*c*e", "abcde"));
        assert!(!glob("a", "ab") && !glob("b", "ab") && !glob("a*c", "abcd"), "anchored at both ends");
        assert!(glob("i-?", "i-1") && !glob("i-?", "i-12") && !glob("i-?", "i-"), "? is exactly one");
        assert!(!glob("Instance/*", "instance/i-1"), "resources and values are case-sensitive");
        assert!(action_matches("EC2:Describe*", "ec2:describeinstances"), "actions are not");
        assert!(!action_matches("ec2:Describe*", "ec2:TerminateInstances"));
    }

    #[test]
    fn operators_and_keys_are_known_or_refused() {
        assert_eq!(operator("StringLike"), Ok((None, "StringLike")));
        assert_eq!(operator("ForAllValues:StringEquals"), Ok((Some("ForAllValues"), "StringEquals")));
        assert_eq!(operator("ForAnyValue:ArnLike"), Ok((Some("ForAnyValue"), "ArnLike")));
        for bad in ["StringEqualsIgnoreCase", "ForAllValues:Null", "forallvalues:StringEquals", "IpAddress", ""] {
            assert!(operator(bad).is_err(), "{bad}");
        }
        assert!(known_key("aws:ResourceTag/Name") && known_key("AWS:RequestTag/x") && known_key("sts:ExternalId"));
        assert!(!known_key("aws:RequestTag/") && !known_key("aws:SourceVpc") && !known_key("aws:ResourceTags/x"));
        for key in [
            "arc-zonal-shift:ResourceIdentifier",
            "elasticloadbalancing:ResourceTag/selfheal:enabled",
            "autoscaling:ResourceTag/team",
            "autoscaling:MinSize",
            "autoscaling:LaunchTemplateVersionSpecified",
        ] {
            assert!(known_key(key), "{key}");
        }
        for key in
            ["autoscaling:ImageId", "autoscaling:TargetCapacityTypes", "cloudwatch:AlarmActions", "arc-zonal-shift:x"]
        {
            assert!(!known_key(key), "not modelled, so not known: {key}");
        }
        assert_eq!(validate_condition(&json!({"StringEquals": {"aws:TagKeys": "a"}})), Ok(()));
        assert!(validate_condition(&json!({"StringEquals": "aws:TagKeys"})).is_err(), "a block maps keys");
        assert!(validate_condition(&json!(["StringEquals"])).is_err(), "a condition maps blocks");
        let unknown = validate_condition(&json!({"StringEquals": {"aws:TagKeys": "a", "aws:SourceIp": "10.0.0.1"}}));
        assert!(unknown.unwrap_err().contains("aws:SourceIp"), "every key of a block is checked");
    }

    #[test]
    fn every_block_and_key_of_a_condition_must_hold_and_a_key_s_values_are_alternatives() {
        let context = Context::from([
            ("aws:resourcetag/team".to_string(), vec!["web".to_string()]),
            ("sts:externalid".to_string(), vec!["x".to_string()]),
        ]);
        let fails = |c: Json| condition_fails(Some(&c), &context);
        assert_eq!(condition_fails(None, &context), Ok(None), "no condition: it holds");
        assert_eq!(fails(json!({"StringEquals": {"aws:ResourceTag/team": "web", "sts:ExternalId": "x"}})), Ok(None));
        assert_eq!(fails(json!({"StringEquals": {"aws:ResourceTag/team": ["db", "web"]}})), Ok(None));
        let why =
            fails(json!({"StringEquals": {"aws:ResourceTag/team": "web"}, "StringLike": {"sts:ExternalId": "y*"}}));
        let why = why.unwrap().expect("the second block fails");
        assert!(why.contains("StringLike") && why.contains("sts:ExternalId") && why.contains("\"x\""), "{why}");
        let why = fails(json!({"StringEquals": {"aws:ResourceTag/team": "web", "sts:ExternalId": "y"}}));
        assert!(why.unwrap().is_some_and(|w| w.contains("sts:ExternalId")), "the second key of a block fails");
        assert!(fails(json!({"Null": {"aws:ResourceTag/team": "maybe"}})).is_err(), "Null takes true or false");
        assert_eq!(
            fails(json!({"StringNotEquals": {"aws:ResourceTag/team": ["db", "web"]}})).map(|w| w.is_some()),
            Ok(true)
        );
    }
}
