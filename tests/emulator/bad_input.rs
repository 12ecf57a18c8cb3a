//! Bad input never panics and never reaches AWS: property tests over the event parser with random JSON,
//! mutated and truncated real samples, wrong types and huge payloads. Seeded, so every run is the same.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use selfheal::trigger::{parse_bytes, parse_event, MAX_EVENT_BYTES};
use serde_json::{json, Value};

/// A runner with a fixed seed and a bounded number of cases.
pub fn seeded_runner(cases: u32) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Arbitrary JSON, weighted towards the keys the parser looks at.
pub fn any_json() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("Records".to_string()),
        Just("Sns".to_string()),
        Just("Message".to_string()),
        Just("detail-type".to_string()),
        Just("source".to_string()),
        Just("detail".to_string()),
        Just("alarmData".to_string()),
        Just("action".to_string()),
        Just("schema".to_string()),
        Just("id".to_string()),
        "[a-zA-Z-]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        prop_oneof![
            Just("aws.ec2".to_string()),
            Just("selfheal.manual".to_string()),
            Just("CloudWatch Alarm State Change".to_string()),
            Just("selfheal.envelope/v1".to_string()),
            ".{0,20}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every sample event, as text.
pub fn samples() -> Vec<String> {
    harness::event_names().iter().map(|n| harness::event(n, &[]).to_string()).collect()
}

/// Replaces the value at a random path of `v` with `replacement`, or removes the key.
pub fn mutate(v: &mut Value, choices: &[usize], replacement: Value) {
    let mut cur = v;
    for (depth, c) in choices.iter().enumerate() {
        let next = match cur {
            Value::Object(m) if !m.is_empty() => {
                let key = m.keys().nth(c % m.len()).cloned().unwrap_or_default();
                if depth == choices.len() - 1 {
                    if c % 3 == 0 {
                        m.remove(&key);
                    } else {
                        m.insert(key, replacement);
                    }
                    return;
                }
                m.get_mut(&key)
            }
            Value::Array(a) if !a.is_empty() => {
                let i = c % a.len();
                if depth == choices.len() - 1 {
                    a[i] = replacement;
                    return;
                }
                a.get_mut(i)
            }
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
}

#[test]
fn random_json_never_panics_and_errors_say_something() {
    let mut runner = seeded_runner(2000);
    runner
        .run(&any_json(), |v| {
            if let Err(e) = parse_event(&v) {
                prop_assert!(!e.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_samples_never_panic() {
    let samples = samples();
    let mut runner = seeded_runner(3000);
    let strategy = (0..samples.len(), prop::collection::vec(any::<usize>(), 1..6), any_json());
    runner
        .run(&strategy, |(i, path, replacement)| {
            let mut v: Value = serde_json::from_str(&samples[i]).unwrap();
            mutate(&mut v, &path, replacement);
            let _ = parse_event(&v);
            Ok(())
        })
        .unwrap();
}

#[test]
fn truncated_samples_are_rejected_cleanly() {
    for s in samples() {
        for cut in [1, s.len() / 3, s.len() / 2, s.len() - 1] {
            let err = parse_bytes(&s.as_bytes()[..cut]).unwrap_err().to_string();
            assert!(err.contains("not valid JSON"), "{err}");
        }
    }
}

#[test]
fn huge_payloads_are_refused_before_parsing() {
    let big = vec![b' '; MAX_EVENT_BYTES + 1];
    let err = parse_bytes(&big).unwrap_err().to_string();
    assert!(err.contains("exceeds the"), "{err}");
    // Deeply nested JSON inside the limit is refused by serde's recursion limit, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_bytes(deep.as_bytes()).is_err());
}

/// Every handler's entry: random JSON that the parser rejects makes no AWS call in any function.
#[test]
fn every_handler_rejects_bad_input_without_an_aws_call() {
    use selfheal::backup::{BackupConfig, BackupEnforcer};
    use selfheal::db::{DbConfig, DbFailover};
    use selfheal::dns::{DnsConfig, DnsFailover};
    use selfheal::healer::{Healer, HealerConfig};
    use selfheal::notifier::{Notifier, NotifierConfig};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let inputs = std::sync::Mutex::new(Vec::new());
    let mut runner = seeded_runner(150);
    runner
        .run(&any_json(), |v| {
            if parse_event(&v).is_err() {
                inputs.lock().unwrap().push(v);
            }
            Ok(())
        })
        .unwrap();
    let inputs = inputs.into_inner().unwrap();
    assert!(inputs.len() > 100, "the generator makes mostly bad input: {}", inputs.len());
    rt.block_on(async {
        let vars = [("SELFHEAL_DNS_RECORDS", "example.com./app.example.com./A")];
        let env = || harness::env(&vars);
        let healer = Healer::new(harness::ctx("instance-healer", &vars).await, HealerConfig::read(&mut env()));
        let db = DbFailover::new(harness::ctx("db-failover", &vars).await, DbConfig::read(&mut env()));
        let dns = DnsFailover::new(harness::ctx("dns-failover", &vars).await, DnsConfig::read(&mut env()));
        let backup = BackupEnforcer::new(harness::ctx("backup-enforcer", &vars).await, BackupConfig::read(&mut env()));
        let notifier = Notifier::new(harness::ctx("notifier", &vars).await, NotifierConfig::read(&mut env())).unwrap();
        for ctx in [healer.ctx(), db.ctx(), dns.ctx(), backup.ctx(), notifier.ctx()] {
            ctx.aws.calls.clear();
        }
        for v in &inputs {
            assert!(healer.handle(v).await.is_err());
            assert!(db.handle(v).await.is_err());
            assert!(dns.handle(v).await.is_err());
            assert!(backup.handle(v).await.is_err());
            assert!(notifier.handle(v).await.is_err());
        }
        for (name, ctx) in [
            ("instance-healer", healer.ctx()),
            ("db-failover", db.ctx()),
            ("dns-failover", dns.ctx()),
            ("backup-enforcer", backup.ctx()),
            ("notifier", notifier.ctx()),
        ] {
            assert_eq!(ctx.aws.calls.total(), 0, "{name} called AWS on bad input: {:?}", ctx.aws.calls.calls());
        }
    });
}
