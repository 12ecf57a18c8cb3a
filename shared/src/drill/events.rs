//! The events a drill delivers, shaped the way AWS delivers them (a CloudWatch alarm through SNS or
//! EventBridge, an RDS event and a schedule through EventBridge, a manual invocation, a selfheal
//! decision through the suite's topic), from the account they name.

use serde_json::{json, Value};

use super::{Architecture, Drill};

/// The account events name when the architecture does not say (a one-account game day in moto).
const HUB: &str = super::architecture::DEFAULT_HOME_ACCOUNT;

fn now_cw() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn sns_wrap(topic: &str, message: &Value) -> Value {
    json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:drill"),
        "Sns": {
            "Type": "Notification", "MessageId": uuid::Uuid::new_v4().to_string(), "TopicArn": topic,
            "Subject": "ALARM", "Message": message.to_string(),
            "Timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "SignatureVersion": "1", "Signature": "EXAMPLE", "SigningCertURL": "EXAMPLE", "UnsubscribeURL": "EXAMPLE",
            "MessageAttributes": {}
        }
    }]})
}

/// A CloudWatch alarm notification as SNS delivers it (each call is a new state change), from the hub.
pub fn alarm_event(
    topic: &str,
    name: &str,
    state: &str,
    metric: &str,
    namespace: &str,
    dims: &[(&str, &str)],
) -> Value {
    alarm_event_in(HUB, topic, name, state, metric, namespace, dims)
}

/// A CloudWatch alarm notification from an alarm in `account`, as SNS delivers it.
pub fn alarm_event_in(
    account: &str,
    topic: &str,
    name: &str,
    state: &str,
    metric: &str,
    namespace: &str,
    dims: &[(&str, &str)],
) -> Value {
    let dimensions: Vec<Value> = dims.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let message = json!({
        "AlarmName": name, "AlarmDescription": "selfheal drill", "AWSAccountId": account,
        "NewStateValue": state, "NewStateReason": format!("drill: {metric} crossed its threshold"),
        "StateChangeTime": now_cw(), "Region": "US East (N. Virginia)",
        "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}"),
        "OldStateValue": if state == "ALARM" { "OK" } else { "ALARM" },
        "Trigger": {"MetricName": metric, "Namespace": namespace, "StatisticType": "Statistic",
            "Statistic": "MAXIMUM", "Unit": null, "Dimensions": dimensions, "Period": 60, "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1.0,
            "TreatMissingData": "missing", "EvaluateLowSampleCountPercentile": ""}
    });
    sns_wrap(topic, &message)
}

/// A CloudWatch alarm's state change as EventBridge delivers it (`aws.cloudwatch`, "CloudWatch Alarm
/// State Change"), from an alarm in `account` on one metric with `dims`.
pub fn alarm_state_change_in(
    account: &str,
    name: &str,
    state: &str,
    metric: &str,
    namespace: &str,
    dims: &[(&str, &str)],
) -> Value {
    let dimensions: serde_json::Map<String, Value> = dims.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let previous = if state == "ALARM" { "OK" } else { "ALARM" };
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": account,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": "us-east-1",
        "resources": [format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}")],
        "detail": {
            "alarmName": name,
            "state": {"value": state, "reason": format!("drill: {metric} crossed its threshold"), "timestamp": now_cw()},
            "previousState": {"value": previous, "reason": "drill", "timestamp": now_cw()},
            "configuration": {"description": "selfheal drill", "metrics": [{"id": "m1", "returnData": true,
                "metricStat": {"metric": {"namespace": namespace, "name": metric, "dimensions": dimensions},
                    "period": 60, "stat": "Sum"}}]}
        }
    })
}

/// A per-AZ load balancer alarm of the suite (`selfheal-az|<az>|<signal>|<lb dimension>`, signal `5xx`
/// or `latency`) changing to `state`, as EventBridge delivers it from the web tier's account: the
/// evidence of a gray failure in `az` (targets failing or slow while their health checks pass).
/// `None` when the architecture has no load balancer.
pub fn per_az_alarm(arch: &Architecture, az: &str, signal: &str, state: &str) -> Option<Value> {
    let lb = arch.load_balancer_dimension()?;
    let name = crate::zone::signals::AlarmName { az: az.into(), signal: signal.into(), load_balancer: lb.into() };
    let metric = if signal == "latency" { "TargetResponseTime" } else { "HTTPCode_Target_5XX_Count" };
    Some(alarm_state_change_in(
        &arch.account_id(arch.web_account.as_ref()),
        &name.render(),
        state,
        metric,
        "AWS/ApplicationELB",
        &[("LoadBalancer", lb), ("AvailabilityZone", az)],
    ))
}

/// A selfheal decision as the suite's topic delivers it to a subscribed function: SNS, the envelope as
/// the message, with the message attributes the subscriptions filter on (`function`, `action`, ...).
pub fn envelope_notification(topic: &str, envelope: &crate::envelope::Envelope) -> Value {
    let attributes: serde_json::Map<String, Value> = envelope
        .message_attributes()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((k, json!({"Type": "String", "Value": v.string_value()?}))))
        .collect();
    let mut v = sns_wrap(topic, &Value::Null);
    if let Some(sns) = v.pointer_mut("/Records/0/Sns") {
        sns["Message"] = json!(envelope.to_json());
        sns["Subject"] = json!(format!("selfheal {} {}", envelope.function, envelope.action));
        sns["MessageAttributes"] = Value::Object(attributes);
    }
    v
}

/// The status-check alarm of a web instance, from the account the web tier lives in.
pub fn ec2_alarm(arch: &Architecture, instance: &str) -> Value {
    alarm_event_in(
        &arch.account_id(arch.web_account.as_ref()),
        &arch.topic_arn,
        &format!("{}-{instance}-status-check", arch.prefix),
        "ALARM",
        "StatusCheckFailed",
        "AWS/EC2",
        &[("InstanceId", instance)],
    )
}

/// An RDS event about a database in the hub, as EventBridge delivers it.
pub fn rds_event(db: &str, category: &str, event_id: &str, message: &str) -> Value {
    rds_event_in(HUB, db, category, event_id, message)
}

/// An RDS event about a database in `account`, as EventBridge delivers it.
pub fn rds_event_in(account: &str, db: &str, category: &str, event_id: &str, message: &str) -> Value {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "RDS DB Instance Event",
        "source": "aws.rds", "account": account,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": "us-east-1",
        "resources": [format!("arn:aws:rds:us-east-1:{account}:db:{db}")],
        "detail": {"EventCategories": [category], "SourceType": "DB_INSTANCE",
            "SourceArn": format!("arn:aws:rds:us-east-1:{account}:db:{db}"),
            "Date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "Message": message, "SourceIdentifier": db, "EventID": event_id}
    })
}

/// The EventBridge schedule event, in the hub.
pub fn schedule_event(rule: &str) -> Value {
    schedule_event_in(HUB, rule)
}

/// The EventBridge schedule event of a rule in `account`.
pub fn schedule_event_in(account: &str, rule: &str) -> Value {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": account,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:{account}:rule/{rule}")], "detail": {}
    })
}

/// A manual invocation.
pub fn manual(action: &str, target: &str, dry_run: bool, force: bool, params: Value) -> Value {
    json!({"source": "selfheal.manual", "action": action, "target": target, "dryRun": dry_run, "force": force,
           "reason": "drill", "requestId": format!("drill-{}", uuid::Uuid::new_v4()), "params": params})
}

/// A manual invocation about a resource in member account `account` (`None`: the hub's), naming the
/// account and the hub's region the way an operator would.
pub fn manual_in(
    drill: &Drill,
    account: Option<&str>,
    action: &str,
    target: &str,
    dry_run: bool,
    force: bool,
    params: Value,
) -> Value {
    let mut v = manual(action, target, dry_run, force, params);
    if let Some(a) = account {
        v["account"] = json!(a);
        v["region"] = json!(drill.ctx.home_region().unwrap_or_else(|| "us-east-1".to_string()));
    }
    v
}
