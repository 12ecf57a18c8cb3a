//! The stack's shared state and channels are there and usable: the ledger table (`DescribeTable`,
//! active, keyed `pk`/`sk`), each topic (`GetTopicAttributes`), the dead-letter queue
//! (`GetQueueAttributes`: present, and empty: a message there is a failed invocation or an
//! undelivered event nobody has read), and the encryption key (`DescribeKey` enabled, `GetKeyPolicy`
//! letting CloudWatch alarms and EventBridge use it, as the topics and the queue need).

use super::{Check, Deployment};
use crate::clients::Aws;
use crate::error::Error;

const REDEPLOY: &str = "deploy the stack (sam deploy) or pass the name of a deployed selfheal stack";

pub async fn check(aws: &Aws, d: &Deployment) -> Vec<Check> {
    let mut out = vec![ledger(aws, d).await];
    if d.topics.is_empty() {
        out.push(Check::fails("topic", "the stack's topics", "none known", REDEPLOY));
    }
    let sns = aws.sns();
    for (name, arn) in &d.topics {
        out.push(match sns.get_topic_attributes().topic_arn(arn).send().await {
            Ok(t) => {
                let subs = t.attributes().and_then(|a| a.get("SubscriptionsConfirmed")).cloned().unwrap_or_default();
                Check::holds("topic", name.clone(), format!("{arn}: present, {subs} confirmed subscriptions"))
            }
            Err(e) => {
                Check::fails("topic", name.clone(), Error::aws("sns", "GetTopicAttributes", e).to_string(), REDEPLOY)
            }
        });
    }
    out.push(queue(aws, d).await);
    out.push(key(aws, d).await);
    out
}

async fn ledger(aws: &Aws, d: &Deployment) -> Check {
    let Some(table) = &d.ledger_table else {
        return Check::fails("ledger", "the ledger table", "not known", REDEPLOY);
    };
    match aws.dynamodb().describe_table().table_name(table).send().await {
        Err(e) => {
            Check::fails("ledger", table.clone(), Error::aws("dynamodb", "DescribeTable", e).to_string(), REDEPLOY)
        }
        Ok(out) => {
            let t = out.table();
            let status = t.and_then(|t| t.table_status()).map(|s| s.as_str().to_string()).unwrap_or_default();
            let keys: Vec<&str> =
                t.map(|t| t.key_schema().iter().map(|k| k.attribute_name()).collect()).unwrap_or_default();
            if status != "ACTIVE" {
                Check::fails(
                    "ledger",
                    table.clone(),
                    format!("status {status}"),
                    "wait for it to be ACTIVE, or redeploy",
                )
            } else if keys != ["pk", "sk"] {
                Check::fails(
                    "ledger",
                    table.clone(),
                    format!("keyed {keys:?}, not pk/sk"),
                    "point SELFHEAL_LEDGER_TABLE at the stack's own table",
                )
            } else {
                Check::holds("ledger", table.clone(), "ACTIVE, keyed pk/sk")
            }
        }
    }
}

async fn queue(aws: &Aws, d: &Deployment) -> Check {
    let Some(url) = &d.dead_letter_queue_url else {
        return Check::fails("queue", "the dead-letter queue", "not known", REDEPLOY);
    };
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await;
    match attrs {
        Err(e) => Check::fails("queue", url.clone(), Error::aws("sqs", "GetQueueAttributes", e).to_string(), REDEPLOY),
        Ok(out) => {
            let waiting: u64 = out
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if waiting == 0 {
                Check::holds("queue", url.clone(), "present, empty")
            } else {
                Check::fails(
                    "queue",
                    url.clone(),
                    format!("{waiting} messages waiting: failed invocations or undelivered events"),
                    "read them (aws sqs receive-message), fix their cause, then purge or redrive the queue",
                )
            }
        }
    }
}

async fn key(aws: &Aws, d: &Deployment) -> Check {
    let Some(arn) = &d.key_arn else {
        return Check::fails("key", "the encryption key", "not known", REDEPLOY);
    };
    let kms = aws_sdk_kms::Client::new(&aws.sdk);
    let enabled = match kms.describe_key().key_id(arn).send().await {
        Err(e) => return Check::fails("key", arn.clone(), Error::aws("kms", "DescribeKey", e).to_string(), REDEPLOY),
        Ok(k) => k.key_metadata().is_some_and(|m| m.enabled()),
    };
    if !enabled {
        return Check::fails(
            "key",
            arn.clone(),
            "disabled: the topics and the queue cannot be written",
            "enable the key",
        );
    }
    let policy = match kms.get_key_policy().key_id(arn).policy_name("default").send().await {
        Err(e) => return Check::fails("key", arn.clone(), Error::aws("kms", "GetKeyPolicy", e).to_string(), REDEPLOY),
        Ok(p) => p.policy().unwrap_or_default().to_string(),
    };
    let missing: Vec<&str> =
        ["cloudwatch.amazonaws.com", "events.amazonaws.com"].into_iter().filter(|p| !policy.contains(p)).collect();
    if missing.is_empty() {
        Check::holds("key", arn.clone(), "enabled; its policy lets CloudWatch alarms and EventBridge use it")
    } else {
        Check::fails(
            "key",
            arn.clone(),
            format!("its policy does not name {}", missing.join(", ")),
            "restore the key policy of infra/template.yaml (EncryptionKey): alarms cannot publish, undelivered events are lost",
        )
    }
}
