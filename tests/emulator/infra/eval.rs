//! The offline evaluators: CloudFormation's intrinsics (`!Ref`, `!Sub`, `!Join`, `!Split`) and
//! conditions evaluated for given parameter values, IAM's wildcard matching, and IAM conditions on the
//! keys of a resource's account. Whatever they cannot evaluate (an unknown intrinsic, operator or
//! condition key) is an error, never passed over. `assume.rs` and `encryption.rs` evaluate the
//! templates with them.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::common::{canon, get, parse, strings, tag_of};

/// Parameter (and pseudo parameter) values for evaluating the template offline.
pub(crate) type Params = BTreeMap<String, String>;

/// `template` with `${Name}` replaced from `vars`, then `params` (`${!Literal}` kept literal), as
/// `!Sub` does.
fn substitute(template: &str, vars: &BTreeMap<String, String>, params: &Params) -> Result<String, String> {
    let (mut out, mut rest) = (String::new(), template);
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or_else(|| format!("!Sub: unclosed ${{ in {template:?}"))?;
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => out.push_str(&format!("${{{literal}}}")),
            None => out.push_str(
                vars.get(name).or_else(|| params.get(name)).ok_or_else(|| format!("!Sub: no value for {name}"))?,
            ),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `v` with `!Ref`, `!Sub`, `!Join` and `!Split` evaluated as CloudFormation would for `params`
/// (delimiters must be literal, as CloudFormation requires). Any other intrinsic is an error.
pub(crate) fn evaluate(v: &Value, params: &Params) -> Result<Value, String> {
    let Value::Tagged(t) = v else {
        return Ok(match v {
            Value::Sequence(items) => {
                Value::Sequence(items.iter().map(|i| evaluate(i, params)).collect::<Result<_, _>>()?)
            }
            Value::Mapping(m) => Value::Mapping(
                m.iter().map(|(k, i)| Ok((k.clone(), evaluate(i, params)?))).collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        });
    };
    let tag = tag_of(v).unwrap_or_default();
    let parts: &[Value] = t.value.as_sequence().map(Vec::as_slice).unwrap_or(&[]);
    let text = |v: &Value| -> Result<String, String> {
        let e = evaluate(v, params)?;
        e.as_str().map(str::to_string).ok_or_else(|| format!("!{tag}: expected a string, got {}", canon(&e)))
    };
    // Not `as_str`, which sees through tags.
    let literal = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("!{tag}: CloudFormation takes a literal here, not {}", canon(other))),
    };
    match (tag.as_str(), &t.value) {
        ("Ref", Value::String(name)) => {
            params.get(name).map(|s| Value::String(s.clone())).ok_or_else(|| format!("no value for !Ref {name}"))
        }
        ("Sub", Value::String(s)) => substitute(s, &BTreeMap::new(), params).map(Value::String),
        ("Sub", _) if parts.len() == 2 => {
            let mut vars = BTreeMap::new();
            for (k, val) in parts[1].as_mapping().into_iter().flatten() {
                vars.insert(k.as_str().unwrap_or_default().to_string(), text(val)?);
            }
            substitute(&literal(&parts[0])?, &vars, params).map(Value::String)
        }
        ("Join", _) if parts.len() == 2 => {
            let items = match evaluate(&parts[1], params)? {
                Value::Sequence(items) => items,
                other => return Err(format!("!Join: expected a list, got {}", canon(&other))),
            };
            let items: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("!Join: not a string: {}", canon(i))))
                .collect::<Result<_, _>>()?;
            Ok(Value::String(items.join(&literal(&parts[0])?)))
        }
        ("Split", _) if parts.len() == 2 => {
            let delimiter = literal(&parts[0])?;
            Ok(Value::Sequence(
                text(&parts[1])?.split(delimiter.as_str()).map(|s| Value::String(s.to_string())).collect(),
            ))
        }
        _ => Err(format!("cannot evaluate {}", canon(v))),
    }
}

/// Whether the template's condition `name` holds for `params`.
pub(crate) fn condition_holds(t: &Value, name: &str, params: &Params) -> Result<bool, String> {
    let def = get(t, "Conditions").and_then(|c| get(c, name)).ok_or_else(|| format!("no condition {name}"))?;
    condition_value(t, def, params)
}

/// A condition function (`!Not`, `!And`, `!Or`, `!Equals`, `!Condition`) evaluated for `params`.
fn condition_value(t: &Value, v: &Value, params: &Params) -> Result<bool, String> {
    let Value::Tagged(tagged) = v else { return Err(format!("not a condition function: {}", canon(v))) };
    let args: &[Value] = tagged.value.as_sequence().map(Vec::as_slice).unwrap_or(&[]);
    let each = || args.iter().map(|a| condition_value(t, a, params)).collect::<Result<Vec<bool>, String>>();
    match tag_of(v).as_deref() {
        Some("Condition") => condition_holds(t, tagged.value.as_str().unwrap_or_default(), params),
        Some("Not") if args.len() == 1 => Ok(!condition_value(t, &args[0], params)?),
        Some("And") => Ok(each()?.into_iter().all(|b| b)),
        Some("Or") => Ok(each()?.into_iter().any(|b| b)),
        Some("Equals") if args.len() == 2 => Ok(evaluate(&args[0], params)? == evaluate(&args[1], params)?),
        _ => Err(format!("cannot evaluate the condition {}", canon(v))),
    }
}

/// IAM's wildcard matching, the IAM evaluator's own (one implementation for both).
pub(crate) use harness::iam::glob as glob_matches;

/// The request context keys [`iam_condition_holds`] knows: those of the resource's account.
const RESOURCE_ACCOUNT_KEYS: [&str; 3] = ["aws:ResourceAccount", "aws:ResourceOrgID", "aws:ResourceOrgPaths"];

/// Whether an evaluated `Condition` holds in `context` (key -> values; a missing key is absent from
/// the request). Keys are ANDed, values of one key ORed; `ForAnyValue` is false and `ForAllValues`
/// true for an absent key, as in IAM. Other operators and keys are errors.
pub(super) fn iam_condition_holds(
    condition: Option<&Value>,
    context: &BTreeMap<&str, Vec<String>>,
) -> Result<bool, String> {
    let Some(condition) = condition else { return Ok(true) };
    let blocks = condition.as_mapping().ok_or_else(|| format!("Condition is not a mapping: {}", canon(condition)))?;
    for (op, block) in blocks {
        let op = op.as_str().unwrap_or_default();
        let (set, test) = match op.split_once(':') {
            Some((set, test)) => (Some(set), test),
            None => (None, op),
        };
        if !["StringEquals", "StringLike"].contains(&test)
            || set.is_some_and(|s| s != "ForAnyValue" && s != "ForAllValues")
        {
            return Err(format!("unknown condition operator {op}"));
        }
        let block = block.as_mapping().ok_or_else(|| format!("{op}: not a mapping of keys"))?;
        for (key, wanted) in block {
            let key = key.as_str().unwrap_or_default();
            if !RESOURCE_ACCOUNT_KEYS.contains(&key) {
                return Err(format!("unknown condition key {key}"));
            }
            let wanted = strings(wanted);
            let matches =
                |v: &String| wanted.iter().any(|w| if test == "StringLike" { glob_matches(w, v) } else { w == v });
            let have = context.get(key);
            let holds = match set {
                Some("ForAllValues") => have.is_none_or(|vs| vs.iter().all(matches)),
                _ => have.is_some_and(|vs| vs.iter().any(matches)),
            };
            if !holds {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[test]
fn the_offline_evaluators_behave_like_cloudformation_and_iam() {
    let params: Params = [("U", "ou-ab12-11111111,r-ab12"), ("A", ""), ("B", "x"), ("AWS::Partition", "aws")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let eval = |yaml: &str| evaluate(&parse(yaml), &params);
    assert_eq!(
        eval(r#"!Split [",", !Sub ["*/${Units}/*", { Units: !Join ["/*,*/", !Split [",", !Ref U]] }]]"#),
        Ok(parse(r#"["*/ou-ab12-11111111/*", "*/r-ab12/*"]"#))
    );
    assert_eq!(eval(r#"!Join [",", [!Ref A, !Ref B]]"#), Ok(Value::String(",x".into())));
    assert_eq!(eval(r#"!Split [",", !Ref A]"#), Ok(parse(r#"[""]"#)));
    assert_eq!(
        eval("!Sub arn:${AWS::Partition}:iam::*:role/${!Literal}"),
        Ok(Value::String("arn:aws:iam::*:role/${Literal}".into()))
    );
    for bad in ["!Ref Missing", "!GetAtt X.Arn", "!Join [!Ref B, [a]]", "!Split [!Ref B, a]"] {
        assert!(eval(bad).is_err(), "{bad}: {:?}", eval(bad));
    }
    let t = parse("Conditions:\n  HasA: !Not [!Equals [!Ref A, \"\"]]\n  HasB: !Not [!Equals [!Ref B, \"\"]]\n  Both: !And [!Condition HasA, !Condition HasB]\n  Either: !Or [!Condition HasA, !Condition HasB]\n");
    assert_eq!(condition_holds(&t, "HasB", &params), Ok(true));
    assert_eq!(condition_holds(&t, "Both", &params), Ok(false));
    assert_eq!(condition_holds(&t, "Either", &params), Ok(true));
    assert!(glob_matches("*/ou-a/*", "o-x/r-a/ou-a/") && glob_matches("*/ou-a/*", "o-x/r-a/ou-a/ou-b/"));
    assert!(!glob_matches("*/ou-a/*", "o-x/r-a/ou-ab/") && !glob_matches("*/ou-a/*", "o-x/r-a/"));
    assert!(glob_matches("a?c", "abc") && !glob_matches("a?c", "ac") && glob_matches("*", ""));
    let context = BTreeMap::from([("aws:ResourceAccount", vec!["111111111111".to_string()])]);
    let holds = |yaml: &str| iam_condition_holds(Some(&parse(yaml)), &context);
    assert_eq!(holds(r#"{ StringEquals: { "aws:ResourceAccount": ["2", "111111111111"] } }"#), Ok(true));
    assert_eq!(
        holds(r#"{ StringEquals: { "aws:ResourceAccount": "111111111111", "aws:ResourceOrgID": o-a } }"#),
        Ok(false)
    );
    assert_eq!(holds(r#"{ "ForAnyValue:StringLike": { "aws:ResourceOrgPaths": "*" } }"#), Ok(false));
    assert_eq!(holds(r#"{ "ForAllValues:StringLike": { "aws:ResourceOrgPaths": "x" } }"#), Ok(true));
    assert!(holds(r#"{ StringNotEquals: { "aws:ResourceAccount": "1" } }"#).is_err());
    assert!(holds(r#"{ StringEquals: { "aws:PrincipalTag/x": "1" } }"#).is_err());
}
