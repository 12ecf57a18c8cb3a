//! Routing, proven offline: every EventBridge rule of every template (`infra/template.yaml`: the
//! functions' own `EventBridgeRule`/`CloudWatchEvent`/`Schedule` events and the hub bus's
//! `AWS::Events::Rule`s; `infra/member.yaml`: the rules forwarding to the hub; `infra/drills.yaml`),
//! read from the templates, matched by the `quamina` crate (an event-ruler-compatible matcher: it
//! descends arrays of objects, array-consistently, which moto's matcher does not) against the
//! AWS-shaped samples in `events/`.
//!
//! Both ways: each sample reaches exactly the functions `events/routing.json` names for it, on every
//! bus, and no other; every sample a rule delivers, and every schedule's payload, is accepted by its
//! function's own intake (the shared crate's parser, then the function's pure reading of the trigger).
//! A pattern operator this test does not know quamina to implement as EventBridge does fails the
//! test, never passes it silently. No emulator: this runs in milliseconds.

use std::collections::{BTreeMap, BTreeSet};

use harness::{event_names, root, ROUTING_TABLE};
use selfheal::trigger::parse_event;
use serde_json::Value as Json;
use serde_norway::Value;

use crate::infra::{functions_by_binary, get, parse, str_at, tag_of, template_text};

/// The templates whose rules are read.
const TEMPLATES: [&str; 3] = ["infra/template.yaml", "infra/member.yaml", "infra/drills.yaml"];

/// Where a rule's events go: straight to a function on the account's default bus, to a function on
/// the hub's bus, or forwarded from a member account to the hub (for the function named).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    DefaultBus,
    HubBus,
    MemberForward,
}

#[derive(Debug, Clone)]
struct PatternRule {
    /// `template:LogicalId` (or `template:Function.Event` for a SAM event).
    id: String,
    route: Route,
    function: String,
    pattern: Json,
}

#[derive(Debug, Clone)]
struct ScheduleRule {
    id: String,
    function: String,
    /// The constant `Input` it delivers instead of the Scheduled Event, if any.
    input: Option<String>,
}

/// A YAML value as JSON; an intrinsic (`!Sub`, `!Ref`...) cannot be matched offline and is an error.
fn to_json(v: &Value, at: &str) -> Result<Json, String> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => serde_json::from_str(&n.to_string()).map_err(|e| format!("{at}: {e}"))?,
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(items) => Json::Array(items.iter().map(|i| to_json(i, at)).collect::<Result<Vec<_>, _>>()?),
        Value::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = k.as_str().ok_or_else(|| format!("{at}: a non-string key {k:?}"))?;
                out.insert(key.to_string(), to_json(v, &format!("{at}.{key}"))?);
            }
            Json::Object(out)
        }
        Value::Tagged(t) => return Err(format!("{at}: an intrinsic {} cannot be matched offline", t.tag)),
    })
}

/// The function binary a rule target's `Arn: !GetAtt <Function>.Arn` names.
fn target_function(target: &Value, by_logical_id: &BTreeMap<String, String>) -> Option<String> {
    let arn = get(target, "Arn")?;
    if tag_of(arn).as_deref() != Some("GetAtt") {
        return None;
    }
    let Value::Tagged(t) = arn else { return None };
    let logical = t.value.as_str()?.strip_suffix(".Arn")?;
    by_logical_id.get(logical).cloned()
}

/// Every pattern and schedule rule of every template.
fn rules() -> (Vec<PatternRule>, Vec<ScheduleRule>) {
    let hub = parse(&template_text("infra/template.yaml"));
    let fns = functions_by_binary(&hub);
    let by_logical_id: BTreeMap<String, String> = fns.iter().map(|(bin, (id, _))| (id.clone(), bin.clone())).collect();
    // A function event's name (`StatusCheckAlarm`) -> its function: what a member's `Forward<Name>` is for.
    let mut by_event_name = BTreeMap::new();
    let (mut patterns, mut schedules) = (Vec::new(), Vec::new());
    for (bin, (id, f)) in &fns {
        let events = get(f, "Properties").and_then(|p| get(p, "Events")).and_then(Value::as_mapping);
        for (name, ev) in events.into_iter().flatten() {
            let name = name.as_str().unwrap().to_string();
            let at = format!("infra/template.yaml:{id}.{name}");
            let props = get(ev, "Properties");
            match str_at(ev, &["Type"]) {
                Some("EventBridgeRule" | "CloudWatchEvent") => {
                    let pattern = props.and_then(|p| get(p, "Pattern")).unwrap_or_else(|| panic!("{at}: no Pattern"));
                    assert!(
                        props.and_then(|p| get(p, "EventBusName")).is_none(),
                        "{at}: a rule on another bus; this test routes the default bus only"
                    );
                    by_event_name.insert(name.clone(), bin.clone());
                    patterns.push(PatternRule {
                        pattern: to_json(pattern, &at).unwrap_or_else(|e| panic!("{e}")),
                        id: at,
                        route: Route::DefaultBus,
                        function: bin.clone(),
                    });
                }
                Some("Schedule" | "ScheduleV2") => {
                    let input = props.and_then(|p| get(p, "Input")).map(|i| {
                        i.as_str().unwrap_or_else(|| panic!("{at}: Input must be a literal string")).to_string()
                    });
                    schedules.push(ScheduleRule { id: at, function: bin.clone(), input });
                }
                _ => {}
            }
        }
    }
    for file in TEMPLATES {
        let t = parse(&template_text(file));
        let Some(res) = get(&t, "Resources").and_then(Value::as_mapping) else { continue };
        for (id, r) in res {
            let id = id.as_str().unwrap();
            if str_at(r, &["Type"]) == Some("AWS::Serverless::Function") && file != "infra/template.yaml" {
                panic!("{file}:{id}: a function outside infra/template.yaml; read its events here too");
            }
            if str_at(r, &["Type"]) != Some("AWS::Events::Rule") {
                continue;
            }
            let at = format!("{file}:{id}");
            let props = get(r, "Properties").unwrap_or_else(|| panic!("{at}: no Properties"));
            let targets =
                get(props, "Targets").and_then(Value::as_sequence).unwrap_or_else(|| panic!("{at}: no Targets"));
            assert_eq!(targets.len(), 1, "{at}: one target per rule");
            let (route, function) = match target_function(&targets[0], &by_logical_id) {
                Some(f) => (Route::HubBus, f),
                None => {
                    let arn = get(&targets[0], "Arn").map(tag_of);
                    assert_eq!(
                        arn,
                        Some(Some("Ref".into())),
                        "{at}: a target that is neither a function nor the hub bus"
                    );
                    let event = id
                        .strip_prefix("Forward")
                        .unwrap_or_else(|| panic!("{at}: a forwarding rule is Forward<Event>"));
                    let f =
                        by_event_name.get(event).unwrap_or_else(|| panic!("{at}: no function has an event {event}"));
                    (Route::MemberForward, f.clone())
                }
            };
            if get(props, "ScheduleExpression").is_some() {
                let input = get(&targets[0], "Input").and_then(Value::as_str).map(str::to_string);
                schedules.push(ScheduleRule { id: at, function, input });
                continue;
            }
            let pattern = get(props, "EventPattern").unwrap_or_else(|| panic!("{at}: no EventPattern"));
            patterns.push(PatternRule {
                pattern: to_json(pattern, &at).unwrap_or_else(|e| panic!("{e}")),
                id: at,
                route,
                function,
            });
        }
    }
    (patterns, schedules)
}

/// The operators EventBridge offers that quamina implements with the same meaning, with the form of
/// their argument this test accepts. Anything else (`$or`, `anything-but` with a `prefix`, a `prefix`
/// with `equals-ignore-case`, an operator not listed) is a problem: quamina would reject it, or worse,
/// read it differently from EventBridge.
fn operator_problems(pattern: &Json, at: &str, out: &mut Vec<String>) {
    let scalar = |v: &Json| matches!(v, Json::String(_) | Json::Number(_) | Json::Bool(_) | Json::Null);
    match pattern {
        Json::Object(m) => {
            for (k, v) in m {
                let here = format!("{at}.{k}");
                if k.starts_with('$') {
                    out.push(format!("{here}: the {k} operator is not implemented by the matcher"));
                    continue;
                }
                match v {
                    Json::Object(_) => operator_problems(v, &here, out),
                    Json::Array(items) => {
                        if items.is_empty() {
                            out.push(format!("{here}: an empty list matches nothing"));
                        }
                        for item in items {
                            match item {
                                Json::Object(op) => operator(op, &here, out),
                                v if scalar(v) => {}
                                other => out.push(format!("{here}: a list inside a list ({other})")),
                            }
                        }
                    }
                    other => out.push(format!("{here}: a field's value must be a list or an object, got {other}")),
                }
            }
        }
        other => out.push(format!("{at}: a pattern must be an object, got {other}")),
    }

    fn operator(op: &serde_json::Map<String, Json>, at: &str, out: &mut Vec<String>) {
        let scalar = |v: &Json| matches!(v, Json::String(_) | Json::Number(_) | Json::Bool(_) | Json::Null);
        if op.len() != 1 {
            out.push(format!("{at}: an operator object must have exactly one key: {op:?}"));
            return;
        }
        let (name, arg) = op.iter().next().unwrap();
        let ok = match name.as_str() {
            "prefix" | "suffix" | "wildcard" | "equals-ignore-case" | "cidr" => arg.is_string(),
            "exists" => arg.is_boolean(),
            "numeric" => arg.as_array().is_some_and(|a| !a.is_empty()),
            "anything-but" => scalar(arg) || arg.as_array().is_some_and(|a| a.iter().all(scalar)),
            _ => false,
        };
        if !ok {
            out.push(format!("{at}: operator {name} with {arg} is not one the matcher implements as EventBridge does"));
        }
    }
}

/// A matcher holding `rules`, refusing any pattern with an operator it lacks.
fn matcher(rules: &[PatternRule]) -> quamina::Quamina<usize> {
    let mut problems = Vec::new();
    for r in rules {
        operator_problems(&r.pattern, &r.id, &mut problems);
    }
    assert!(problems.is_empty(), "patterns the matcher cannot evaluate faithfully:\n{}", problems.join("\n"));
    let mut q = quamina::Quamina::new();
    for (i, r) in rules.iter().enumerate() {
        q.add_pattern(i, &r.pattern.to_string()).unwrap_or_else(|e| panic!("{}: the matcher refuses it: {e:?}", r.id));
    }
    q
}

fn sample(name: &str) -> Json {
    let text =
        std::fs::read_to_string(root().join("events").join(name)).unwrap_or_else(|e| panic!("events/{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("events/{name}: {e}"))
}

/// `events/routing.json`: sample file -> the functions it must reach.
fn routing_table() -> BTreeMap<String, BTreeSet<String>> {
    let table = sample(ROUTING_TABLE);
    let samples = table.get("samples").and_then(Json::as_object).expect("routing.json has samples");
    samples
        .iter()
        .map(|(file, fns)| {
            let fns = fns.as_array().unwrap_or_else(|| panic!("routing.json {file}: a list of functions"));
            (file.clone(), fns.iter().map(|f| f.as_str().unwrap().to_string()).collect())
        })
        .collect()
}

/// Whether `function` takes `payload`: the shared parser, then the function's own pure intake (an
/// approval settlement is taken by every function's shared entry before its intake).
fn accepts(function: &str, payload: &Json) -> Result<(), String> {
    // The drill takes whole payloads: a preflight/coverage/keep-alarms action or a drill request.
    if function == "drill" {
        if selfheal::drill::preflight::requested(payload).is_some()
            || selfheal::drill::standard_alarms::requested(payload).is_some()
        {
            return Ok(());
        }
        return selfheal::drill::parse_request(payload).map(|_| ()).map_err(|e| e.to_string());
    }
    let triggers = parse_event(payload).map_err(|e| e.to_string())?;
    for t in &triggers {
        if selfheal::approval::settlement(t).is_some() {
            continue;
        }
        let took = match function {
            "instance-healer" => {
                let mut env = selfheal::config::Env::from_map(Default::default());
                let cfg = selfheal::healer::HealerConfig::read(&mut env);
                selfheal::healer::intake(t, &cfg).map(|_| ())
            }
            "db-failover" => selfheal::db::intent_from_trigger(t).map(|_| ()),
            "dns-failover" => selfheal::dns::intake(t).map(|_| ()),
            "backup-enforcer" => selfheal::backup::sweep_request(t).map(|_| ()),
            "zone-evacuator" => selfheal::zone::signals::intake(t, chrono::Utc::now()).map(|_| ()),
            other => panic!("no intake known for {other}: add it here"),
        };
        took.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The functions each route delivers `event` to.
fn reached(q: &quamina::Quamina<usize>, rules: &[PatternRule], event: &Json) -> BTreeMap<Route, BTreeSet<String>> {
    let mut out: BTreeMap<Route, BTreeSet<String>> =
        [Route::DefaultBus, Route::HubBus, Route::MemberForward].into_iter().map(|r| (r, BTreeSet::new())).collect();
    for i in q.matches_for_event(event.to_string().as_bytes()).expect("the matcher reads the event") {
        out.entry(rules[i].route).or_default().insert(rules[i].function.clone());
    }
    out
}

#[test]
fn every_sample_reaches_exactly_its_functions_on_every_bus_and_each_takes_it() {
    let (rules, _) = rules();
    let q = matcher(&rules);
    let table = routing_table();
    let mut matched_by_rule = vec![0usize; rules.len()];
    for (file, want) in &table {
        let event = sample(file);
        for (route, got) in reached(&q, &rules, &event) {
            assert_eq!(&got, want, "events/{file} on {route:?}: reaches {got:?}, routing.json says {want:?}");
        }
        for i in q.matches_for_event(event.to_string().as_bytes()).unwrap() {
            matched_by_rule[i] += 1;
            let r = &rules[i];
            if let Err(e) = accepts(&r.function, &event) {
                panic!("{} delivers events/{file} to {}, whose intake refuses it: {e}", r.id, r.function);
            }
        }
    }
    let idle: Vec<&str> =
        rules.iter().zip(&matched_by_rule).filter(|(_, n)| **n == 0).map(|(r, _)| r.id.as_str()).collect();
    assert!(idle.is_empty(), "rules no sample proves (add a sample of what each one is for): {idle:?}");
}

#[test]
fn the_routing_table_covers_every_eventbridge_sample() {
    let table = routing_table();
    for name in event_names() {
        let is_eventbridge = sample(&name).get("detail-type").is_some();
        assert_eq!(
            table.contains_key(&name),
            is_eventbridge,
            "events/{name}: every EventBridge sample is in routing.json, and nothing else is"
        );
    }
}

#[test]
fn every_schedule_delivers_what_its_function_takes() {
    let (_, schedules) = rules();
    assert!(schedules.len() >= 5, "{schedules:?}");
    for s in &schedules {
        let payload = match &s.input {
            Some(input) => serde_json::from_str(input).unwrap_or_else(|e| panic!("{}: Input is not JSON: {e}", s.id)),
            None => sample("schedule-backup-sweep.json"),
        };
        if let Err(e) = accepts(&s.function, &payload) {
            panic!("{} delivers {payload} to {}, whose intake refuses it: {e}", s.id, s.function);
        }
    }
}

/// The hub re-routes what the members forward with the same patterns: the three routes hold the same
/// rules for the same functions (a rule missing on one is a sample reaching fewer functions there, which
/// the test above also sees, but only for the samples it has).
#[test]
fn each_route_has_the_same_rules_for_the_same_functions() {
    let (rules, _) = rules();
    let mut by_route: BTreeMap<Route, BTreeSet<(String, String)>> = BTreeMap::new();
    for r in &rules {
        by_route.entry(r.route).or_default().insert((r.function.clone(), r.pattern.to_string()));
    }
    let default = &by_route[&Route::DefaultBus];
    assert!(default.len() >= 8, "{default:?}");
    assert_eq!(by_route.get(&Route::HubBus), Some(default), "the hub bus's rules differ from the functions' own");
    assert_eq!(
        by_route.get(&Route::MemberForward),
        Some(default),
        "the members' forwarding rules differ from the hub's"
    );
}

/// What the routing relies on the matcher for, shown on small cases: it descends arrays of objects
/// array-consistently (a metric-math alarm's `StatusCheckFailed` in one metric and `AWS/EC2` in another
/// is not a match), and the operator check refuses what the matcher does not implement.
#[test]
fn the_matcher_is_array_consistent_and_unknown_operators_fail() {
    let pattern = serde_json::json!({"detail": {"configuration": {"metrics": {"metricStat": {"metric": {
        "namespace": ["AWS/EC2"], "name": [{"prefix": "StatusCheckFailed"}]}}}}}});
    let rule = PatternRule { id: "p".into(), route: Route::DefaultBus, function: "f".into(), pattern };
    let q = matcher(std::slice::from_ref(&rule));
    let metric = |ns: &str, name: &str| serde_json::json!({"metricStat": {"metric": {"namespace": ns, "name": name}}});
    let event = |metrics: Vec<Json>| serde_json::json!({"detail": {"configuration": {"metrics": metrics}}});
    let matches = |e: Json| q.matches_for_event(e.to_string().as_bytes()).unwrap().len();
    assert_eq!(matches(event(vec![metric("AWS/EC2", "NetworkIn"), metric("AWS/EC2", "StatusCheckFailed_System")])), 1);
    assert_eq!(matches(event(vec![metric("AWS/EC2", "NetworkIn"), metric("AWS/Custom", "StatusCheckFailed")])), 0);

    for bad in [
        serde_json::json!({"$or": [{"a": ["x"]}, {"b": ["y"]}]}),
        serde_json::json!({"a": [{"anything-but": {"prefix": "x"}}]}),
        serde_json::json!({"a": [{"prefix": {"equals-ignore-case": "x"}}]}),
        serde_json::json!({"a": [{"ends-with": "x"}]}),
        serde_json::json!({"a": "x"}),
    ] {
        let mut problems = Vec::new();
        operator_problems(&bad, "p", &mut problems);
        assert!(!problems.is_empty(), "{bad} passed the operator check");
    }
    let mut problems = Vec::new();
    let good = serde_json::json!({"a": [{"prefix": "x"}, {"exists": true}, {"numeric": [">", 1]}, {"anything-but": ["a"]}, "b"]});
    operator_problems(&good, "p", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
}

/// One SNS subscription of a function in the hub template: its topic (the `!Ref`'s logical id) and
/// its filter policy on the message body, if any.
struct SnsSubscription {
    id: String,
    function: String,
    topic: String,
    filter: Option<Json>,
}

fn sns_subscriptions() -> Vec<SnsSubscription> {
    let hub = parse(&template_text("infra/template.yaml"));
    let mut out = Vec::new();
    for (bin, (id, f)) in &functions_by_binary(&hub) {
        let events = get(f, "Properties").and_then(|p| get(p, "Events")).and_then(Value::as_mapping);
        for (name, ev) in events.into_iter().flatten() {
            if str_at(ev, &["Type"]) != Some("SNS") {
                continue;
            }
            let at = format!("infra/template.yaml:{id}.{}", name.as_str().unwrap_or("?"));
            let props = get(ev, "Properties").unwrap_or_else(|| panic!("{at}: no Properties"));
            let topic = match get(props, "Topic") {
                Some(t @ Value::Tagged(tagged)) if tag_of(t).as_deref() == Some("Ref") => {
                    tagged.value.as_str().map(str::to_string)
                }
                _ => None,
            }
            .unwrap_or_else(|| panic!("{at}: the topic must be a !Ref to read it offline"));
            let filter = get(props, "FilterPolicy").map(|p| to_json(p, &at).unwrap_or_else(|e| panic!("{e}")));
            if filter.is_some() {
                assert_eq!(
                    str_at(props, &["FilterPolicyScope"]),
                    Some("MessageBody"),
                    "{at}: this test reads filter policies on the message body (attributes carry nothing here)"
                );
            }
            out.push(SnsSubscription { id: at, function: bin.clone(), topic, filter });
        }
    }
    out
}

/// The message body an SNS-delivered sample carries (the alarm or the envelope itself).
fn sns_body(name: &str) -> Json {
    let s = sample(name);
    let text = s["Records"][0]["Sns"]["Message"].as_str().unwrap_or_else(|| panic!("events/{name}: no Sns.Message"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("events/{name}: the message is not JSON: {e}"))
}

/// Every SNS subscription's filter policy (issue #30), matched by quamina against the message bodies
/// the topics carry: each message reaches exactly the filtered subscriptions meant for it. The
/// alarms topic's `RdsAlarms` takes an RDS alarm going to ALARM, not its OK nor an EC2 or Route 53
/// alarm; the events topic's `HealerShortCircuit` takes the healer's AZ short-circuit, not its group
/// short-circuit, its other decisions nor another function's. Operators are checked as for the rules.
#[test]
fn sns_filter_policies_deliver_each_message_to_the_subscriptions_meant_for_it() {
    let subs = sns_subscriptions();
    let filtered: Vec<&SnsSubscription> = subs.iter().filter(|s| s.filter.is_some()).collect();
    assert!(
        filtered.len() >= 2,
        "the template's filtered subscriptions: {:?}",
        filtered.iter().map(|s| &s.id).collect::<Vec<_>>()
    );
    let mut problems = Vec::new();
    for s in &filtered {
        operator_problems(s.filter.as_ref().unwrap(), &s.id, &mut problems);
    }
    assert!(problems.is_empty(), "filter policies the matcher cannot evaluate faithfully:\n{}", problems.join("\n"));
    let mut q = quamina::Quamina::new();
    for (i, s) in filtered.iter().enumerate() {
        q.add_pattern(i, &s.filter.as_ref().unwrap().to_string()).unwrap_or_else(|e| panic!("{}: {e:?}", s.id));
    }
    let reached = |topic: &str, body: &Json| -> BTreeSet<String> {
        q.matches_for_event(body.to_string().as_bytes())
            .expect("the matcher reads the message")
            .into_iter()
            .filter(|i| filtered[*i].topic == topic)
            .map(|i| filtered[i].function.clone())
            .collect()
    };
    let set = |fns: &[&str]| fns.iter().map(|f| f.to_string()).collect::<BTreeSet<String>>();

    let rds = sns_body("alarm-sns-rds-primary.json");
    assert_eq!(reached("AlarmsTopic", &rds), set(&["db-failover"]), "{rds}");
    let mut rds_ok = rds.clone();
    rds_ok["NewStateValue"] = Json::from("OK");
    assert_eq!(reached("AlarmsTopic", &rds_ok), set(&[]), "an OK is no failure");
    for other in ["alarm-sns-ec2-status-check.json", "alarm-sns-route53-health-check.json"] {
        assert!(!reached("AlarmsTopic", &sns_body(other)).contains("db-failover"), "{other} is not db-failover's");
    }

    let envelope = sns_body("envelope-sns.json");
    let mut az = envelope.clone();
    az["function"] = Json::from("instance-healer");
    az["details"]["shortCircuit"] = serde_json::json!({"scope": "az:us-east-1a", "unhealthy": 3, "members": 9});
    assert_eq!(reached("EventsTopic", &az), set(&["zone-evacuator"]), "{az}");
    let mut group = az.clone();
    group["details"]["shortCircuit"]["scope"] = Json::from("group:web");
    assert_eq!(reached("EventsTopic", &group), set(&[]), "a group's short-circuit is no AZ's evidence");
    let mut other_fn = az.clone();
    other_fn["function"] = Json::from("zone-evacuator");
    assert_eq!(reached("EventsTopic", &other_fn), set(&[]), "the evacuator's own envelopes do not invoke it");
    let plain = {
        let mut e = envelope.clone();
        e["function"] = Json::from("instance-healer");
        e
    };
    assert_eq!(reached("EventsTopic", &plain), set(&[]), "the healer's other decisions: {plain}");
}
