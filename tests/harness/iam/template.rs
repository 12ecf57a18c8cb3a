//! The templates, resolved: `infra/template.yaml` and `infra/member.yaml` parsed once, and a [`Stack`]
//! (a template with its parameter values and what its resources stand for in the tests) that
//! evaluates CloudFormation's intrinsics (`!Ref`, `!GetAtt`, `!Sub`, `!Join`, `!Split`, `!If`) and
//! conditions as a deployment would; anything else is an error.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value as Json;
use serde_norway::Value;

use super::{STACK_NAME, STACK_REGION};

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(crate::root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub(super) fn hub_template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| serde_norway::from_str(&repo_file("infra/template.yaml")).expect("infra/template.yaml"))
}

pub(super) fn member_template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| serde_norway::from_str(&repo_file("infra/member.yaml")).expect("infra/member.yaml"))
}

pub(super) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn tag_of(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => Some(t.tag.to_string().trim_start_matches('!').to_string()),
        _ => None,
    }
}

type Params = BTreeMap<String, String>;

/// A template, its parameter values and what its resources stand for in the tests (`LedgerTable.Arn`,
/// `EventsTopic` -> the real ARN); an unbound resource resolves to `unbound:<name>`, which matches
/// nothing real.
pub(super) struct Stack<'a> {
    t: &'a Value,
    params: Params,
    bindings: BTreeMap<String, String>,
}

impl Stack<'_> {
    /// `t`'s parameters at their defaults, `set` over them, and the pseudo parameters.
    pub(super) fn new<'a>(t: &'a Value, account: &str, set: &[(&str, String)]) -> Stack<'a> {
        let mut params = Params::new();
        for (k, p) in get(t, "Parameters").and_then(Value::as_mapping).into_iter().flatten() {
            let default = match get(p, "Default") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => String::new(),
            };
            params.insert(k.as_str().unwrap_or_default().to_string(), default);
        }
        for (k, v) in [
            ("AWS::AccountId", account),
            ("AWS::Region", STACK_REGION),
            ("AWS::Partition", "aws"),
            ("AWS::StackName", STACK_NAME),
            ("AWS::URLSuffix", "amazonaws.com"),
        ] {
            params.insert(k.to_string(), v.to_string());
        }
        for (k, v) in set {
            assert!(params.contains_key(*k), "the template has no parameter {k}");
            params.insert(k.to_string(), v.clone());
        }
        Stack { t, params, bindings: BTreeMap::new() }
    }

    pub(super) fn bind(mut self, name: &str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            self.bindings.insert(name.to_string(), v.to_string());
        }
        self
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        if let Some(v) = self.params.get(name).or_else(|| self.bindings.get(name)) {
            return Ok(v.clone());
        }
        let resource = name.split('.').next().unwrap_or(name);
        if get(self.t, "Resources").and_then(|r| get(r, resource)).is_some() {
            return Ok(format!("unbound:{name}"));
        }
        Err(format!("nothing named {name} in the template"))
    }

    fn sub(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
        let (mut out, mut rest) = (String::new(), text);
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let end = after.find('}').ok_or_else(|| format!("!Sub: unclosed ${{ in {text:?}"))?;
            let name = &after[..end];
            match name.strip_prefix('!') {
                Some(literal) => out.push_str(&format!("${{{literal}}}")),
                None => match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&self.reference(name)?),
                },
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    pub(super) fn condition(&self, name: &str) -> Result<bool, String> {
        let def = get(self.t, "Conditions").and_then(|c| get(c, name)).ok_or_else(|| format!("no condition {name}"))?;
        self.condition_value(def)
    }

    fn condition_value(&self, v: &Value) -> Result<bool, String> {
        let Value::Tagged(t) = v else { return Err(format!("not a condition function: {v:?}")) };
        let args: &[Value] = t.value.as_sequence().map(Vec::as_slice).unwrap_or(&[]);
        match tag_of(v).as_deref() {
            Some("Condition") => self.condition(t.value.as_str().unwrap_or_default()),
            Some("Not") if args.len() == 1 => Ok(!self.condition_value(&args[0])?),
            Some("And") => args.iter().try_fold(true, |acc, a| Ok(acc & self.condition_value(a)?)),
            Some("Or") => args.iter().try_fold(false, |acc, a| Ok(acc | self.condition_value(a)?)),
            Some("Equals") if args.len() == 2 => Ok(self.resolve(&args[0])? == self.resolve(&args[1])?),
            _ => Err(format!("cannot evaluate the condition {v:?}")),
        }
    }

    /// `v` with its intrinsics evaluated, as JSON; `None` for `AWS::NoValue`.
    pub(super) fn resolve(&self, v: &Value) -> Result<Option<Json>, String> {
        match v {
            Value::Null => Ok(Some(Json::Null)),
            Value::Bool(b) => Ok(Some(Json::Bool(*b))),
            Value::Number(n) => Ok(Some(Json::String(n.to_string()))),
            Value::String(s) => Ok(Some(Json::String(s.clone()))),
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.extend(self.resolve(i)?);
                }
                Ok(Some(Json::Array(out)))
            }
            Value::Mapping(m) => {
                let mut out = serde_json::Map::new();
                for (k, i) in m {
                    let k = k.as_str().ok_or_else(|| format!("a non-string key: {k:?}"))?;
                    if let Some(x) = self.resolve(i)? {
                        out.insert(k.to_string(), x);
                    }
                }
                Ok(Some(Json::Object(out)))
            }
            Value::Tagged(t) => {
                let tag = tag_of(v).unwrap_or_default();
                let parts: &[Value] = t.value.as_sequence().map(Vec::as_slice).unwrap_or(&[]);
                let text = |x: &Value| -> Result<String, String> {
                    match self.resolve(x)? {
                        Some(Json::String(s)) => Ok(s),
                        other => Err(format!("!{tag}: expected a string, got {other:?}")),
                    }
                };
                match (tag.as_str(), &t.value) {
                    ("Ref", Value::String(name)) if name == "AWS::NoValue" => Ok(None),
                    ("Ref", Value::String(name)) => self.reference(name).map(|s| Some(Json::String(s))),
                    ("GetAtt", Value::String(dotted)) => self.reference(dotted).map(|s| Some(Json::String(s))),
                    ("GetAtt", _) if parts.len() == 2 => {
                        let dotted = format!("{}.{}", text(&parts[0])?, text(&parts[1])?);
                        self.reference(&dotted).map(|s| Some(Json::String(s)))
                    }
                    ("Sub", Value::String(s)) => self.sub(s, &BTreeMap::new()).map(|s| Some(Json::String(s))),
                    ("Sub", _) if parts.len() == 2 => {
                        let mut vars = BTreeMap::new();
                        for (k, x) in parts[1].as_mapping().into_iter().flatten() {
                            vars.insert(k.as_str().unwrap_or_default().to_string(), text(x)?);
                        }
                        let Value::String(template) = &parts[0] else { return Err("!Sub: not a literal".into()) };
                        self.sub(template, &vars).map(|s| Some(Json::String(s)))
                    }
                    ("Join", _) if parts.len() == 2 => {
                        let Value::String(sep) = &parts[0] else { return Err("!Join: delimiter not literal".into()) };
                        let items = match self.resolve(&parts[1])? {
                            Some(Json::Array(items)) => items,
                            other => return Err(format!("!Join: expected a list, got {other:?}")),
                        };
                        let items: Vec<String> = items
                            .iter()
                            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("!Join: {i}")))
                            .collect::<Result<_, _>>()?;
                        Ok(Some(Json::String(items.join(sep))))
                    }
                    ("Split", _) if parts.len() == 2 => {
                        let Value::String(sep) = &parts[0] else { return Err("!Split: delimiter not literal".into()) };
                        let s = text(&parts[1])?;
                        Ok(Some(Json::Array(s.split(sep.as_str()).map(|p| Json::String(p.to_string())).collect())))
                    }
                    ("If", _) if parts.len() == 3 => {
                        let c = parts[0].as_str().ok_or("!If: condition name")?;
                        self.resolve(if self.condition(c)? { &parts[1] } else { &parts[2] })
                    }
                    _ => Err(format!("cannot evaluate !{tag} {:?}", t.value)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Zone: { Type: String, Default: Z1 }
  Ids: { Type: String, Default: "a,b" }
  Empty: { Type: String, Default: "" }
  Count: { Type: Number, Default: 3 }
Conditions:
  HasEmpty: !Not [!Equals [!Ref Empty, ""]]
  HasZone: !Equals [!Ref Zone, Z9]
  Both: !And [!Condition HasZone, !Not [!Condition HasEmpty]]
  Either: !Or [!Condition HasEmpty, !Condition HasEmpty]
Resources:
  Table: { Type: AWS::DynamoDB::Table }
  Topic: { Type: AWS::SNS::Topic }
"#;

    fn resolved(stack: &Stack, yaml: &str) -> Result<Option<Json>, String> {
        stack.resolve(&serde_norway::from_str(yaml).unwrap())
    }

    #[test]
    fn intrinsics_resolve_as_cloudformation_would_and_the_rest_is_an_error() {
        let t: Value = serde_norway::from_str(TEMPLATE).unwrap();
        let s = Stack::new(&t, "111111111111", &[("Zone", "Z9".into())]).bind("Table.Arn", Some("arn:table"));
        let one = |yaml: &str| resolved(&s, yaml);
        // Parameters (a set value over its default), pseudo parameters, bound and unbound resources.
        assert_eq!(
            one(r#"!Sub "arn:${AWS::Partition}:route53:::hostedzone/${Zone}""#),
            Ok(Some(json!("arn:aws:route53:::hostedzone/Z9")))
        );
        assert_eq!(one("!Ref AWS::AccountId"), Ok(Some(json!("111111111111"))));
        assert_eq!(one("!Sub ${AWS::StackName}-${AWS::Region}"), Ok(Some(json!("selfheal-us-east-1"))));
        assert_eq!(one(r#"!Sub ["${A}/${Count}", { A: !Ref Ids }]"#), Ok(Some(json!("a,b/3"))));
        assert_eq!(one(r#"!Sub "${!Literal}""#), Ok(Some(json!("${Literal}"))));
        assert_eq!(one("!GetAtt Table.Arn"), Ok(Some(json!("arn:table"))));
        assert_eq!(one("!GetAtt [Table, Arn]"), Ok(Some(json!("arn:table"))));
        assert_eq!(one("!Ref Topic"), Ok(Some(json!("unbound:Topic"))), "matches nothing real");
        assert_eq!(one(r#"!Join ["-", !Split [",", !Ref Ids]]"#), Ok(Some(json!("a-b"))));
        // !If, and AWS::NoValue dropped from lists and mappings.
        assert_eq!(one("!If [HasZone, a, b]"), Ok(Some(json!("a"))));
        assert_eq!(one("!If [HasEmpty, x, !Ref AWS::NoValue]"), Ok(None));
        assert_eq!(one("[a, !If [HasEmpty, b, !Ref AWS::NoValue]]"), Ok(Some(json!(["a"]))));
        assert_eq!(one("{ K: !Ref AWS::NoValue, L: 1 }"), Ok(Some(json!({"L": "1"}))));
        // What it cannot evaluate is an error, never a guess.
        for bad in ["!Ref Nothing", "!Sub ${Nothing}", "!Select [0, [a]]", "!FindInMap [M, a, b]", "!Sub \"${Zone\""] {
            assert!(one(bad).is_err(), "{bad}: {:?}", one(bad));
        }
        assert!(one("!If [Missing, a, b]").is_err(), "an unknown condition");
    }

    #[test]
    fn conditions_are_evaluated_for_the_stack_s_parameters() {
        let t: Value = serde_norway::from_str(TEMPLATE).unwrap();
        let set = Stack::new(&t, "1", &[("Zone", "Z9".into())]);
        let default = Stack::new(&t, "1", &[]);
        assert_eq!((set.condition("HasZone"), default.condition("HasZone")), (Ok(true), Ok(false)));
        assert_eq!(set.condition("HasEmpty"), Ok(false));
        assert_eq!((set.condition("Both"), default.condition("Both")), (Ok(true), Ok(false)));
        assert_eq!(set.condition("Either"), Ok(false));
        assert!(set.condition("Missing").is_err());
    }

    #[test]
    #[should_panic(expected = "the template has no parameter Nope")]
    fn setting_a_parameter_the_template_lacks_is_a_mistake() {
        let t: Value = serde_norway::from_str(TEMPLATE).unwrap();
        let _ = Stack::new(&t, "1", &[("Nope", String::new())]);
    }
}
