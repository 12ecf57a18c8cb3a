//! `Records` batches that are not SNS: an SQS batch of selfheal shard messages (one trigger per
//! record), and a batch from another AWS service (S3, SQS, DynamoDB Streams, ...), named and skipped.

use serde_json::Value;

use super::fields::{required_str, str_field};
use super::{Delivery, ForeignEvent, Scope, ShardMessage, Trigger, TriggerKind, SHARD_SCHEMA};
use crate::error::{Error, Result};

/// An SQS batch whose first record's body is a shard message: one trigger per record, identified by
/// the body's `run` and `shard` (the same however often it is delivered or sent). `None` when the
/// batch is not one (it goes on to the other parsers); an error names a record that breaks the shape.
pub(super) fn shard_records(payload: &Value) -> Option<Result<Vec<Trigger>>> {
    const SHAPE: &str = "SQS shard";
    let records = payload.get("Records")?.as_array()?;
    let body = |r: &Value| str_field(r, "body").and_then(|b| serde_json::from_str::<Value>(b).ok());
    let first = records.first()?;
    if str_field(first, "eventSource") != Some("aws:sqs") || body(first)?.get("schema")?.as_str()? != SHARD_SCHEMA {
        return None;
    }
    let parse = |r: &Value| -> Result<Trigger> {
        let message_id = required_str(r, "messageId", SHAPE)?;
        let b = body(r).filter(|b| str_field(b, "schema") == Some(SHARD_SCHEMA)).ok_or_else(|| {
            Error::malformed(SHAPE, format!("message {message_id}: body is not a {SHARD_SCHEMA} message"))
        })?;
        let run = required_str(&b, "run", SHAPE)?;
        let shard = required_str(&b, "shard", SHAPE)?;
        let receive_count = r
            .pointer("/attributes/ApproximateReceiveCount")
            .and_then(Value::as_str)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let scope =
            Scope::with(str_field(&b, "account").map(str::to_string), str_field(&b, "region").map(str::to_string));
        Ok(Trigger {
            event_id: format!("shard:{run}/{shard}"),
            delivery: Delivery::Direct,
            kind: TriggerKind::Shard(ShardMessage {
                message_id,
                receive_count,
                queue_arn: str_field(r, "eventSourceARN").unwrap_or_default().to_string(),
                body: b,
            }),
            scope,
        })
    };
    Some(records.iter().map(parse).collect())
}

/// A `Records` batch from another AWS service, named by its first record's `eventSource` (or
/// `EventSource`): S3, SQS, DynamoDB Streams, Kinesis, SES... `None` for SNS (`aws:sns`, or a record
/// with an `Sns` object) and for records naming no `aws:` source, which go on to the SNS parser.
pub(super) fn foreign_records(payload: &Value) -> Option<Trigger> {
    let records = payload.get("Records")?.as_array()?;
    let first = records.first()?;
    if first.get("Sns").is_some() {
        return None;
    }
    let source = str_field(first, "eventSource").or_else(|| str_field(first, "EventSource"))?;
    if source == "aws:sns" || !source.starts_with("aws:") || source.len() <= "aws:".len() {
        return None;
    }
    // The same batch redelivered keeps its identity: the record's own id where it has one, else a
    // digest of the payload.
    let own_id = ["messageId", "eventID", "eventId"]
        .iter()
        .find_map(|k| str_field(first, k))
        .or_else(|| first.pointer("/ses/mail/messageId").and_then(Value::as_str))
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let id = own_id.unwrap_or_else(|| format!("{:016x}", fnv1a(payload.to_string().as_bytes())));
    Some(Trigger {
        event_id: format!("foreign:{source}:{id}"),
        delivery: Delivery::Direct,
        kind: TriggerKind::Foreign(ForeignEvent {
            source: source.to_string(),
            detail_type: None,
            records: records.len(),
        }),
        scope: Scope::default(),
    })
}

/// FNV-1a, 64 bits: a stable digest (unlike `DefaultHasher`, the same in every build).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use crate::trigger::test_support::s3_put;
    use crate::trigger::{parse_event, Scope};
    use serde_json::json;

    #[test]
    fn records_from_other_services_are_named_not_called_malformed_sns() {
        let t = parse_event(&s3_put()).unwrap().remove(0);
        assert_eq!(t.kind.name(), "foreign");
        assert_eq!(t.describe(), "an S3 event (aws:s3, 1 record)");
        assert!(t.event_id.starts_with("foreign:aws:s3:"), "{}", t.event_id);
        assert_eq!(parse_event(&s3_put()).unwrap().remove(0).event_id, t.event_id, "a redelivery keeps its identity");
        assert_eq!(t.scope, Scope::default());

        let sqs = json!({"Records": [
            {"messageId": "059f36b4-87a3-44ab-83d2-661975830a7d", "body": "hi", "eventSource": "aws:sqs",
             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"},
            {"messageId": "2e1424d4-f796-459a-8184-9c92662be6da", "body": "there", "eventSource": "aws:sqs"}
        ]});
        let t = parse_event(&sqs).unwrap().remove(0);
        assert_eq!(t.describe(), "an SQS message batch (aws:sqs, 2 records)");
        assert_eq!(t.event_id, "foreign:aws:sqs:059f36b4-87a3-44ab-83d2-661975830a7d");

        let ddb = json!({"Records": [{"eventID": "c4ca4238a0b923820dcc509a6f75849b", "eventName": "INSERT",
            "eventSource": "aws:dynamodb", "dynamodb": {"Keys": {"Id": {"N": "101"}}}}]});
        let t = parse_event(&ddb).unwrap().remove(0);
        assert_eq!(t.describe(), "a DynamoDB stream event (aws:dynamodb, 1 record)");
        assert_eq!(t.event_id, "foreign:aws:dynamodb:c4ca4238a0b923820dcc509a6f75849b");

        let kinesis = json!({"Records": [{"eventSource": "aws:kinesis", "eventID": "shardId-000:4959",
            "kinesis": {"data": "SGVsbG8="}}]});
        assert_eq!(parse_event(&kinesis).unwrap()[0].describe(), "a Kinesis stream event (aws:kinesis, 1 record)");
        let ses = json!({"Records": [{"eventSource": "aws:ses", "eventVersion": "1.0",
            "ses": {"mail": {"messageId": "o3vrnil0e2ic28tr"}}}]});
        let t = parse_event(&ses).unwrap().remove(0);
        assert_eq!(
            (t.describe().as_str(), t.event_id.as_str()),
            ("an SES event (aws:ses, 1 record)", "foreign:aws:ses:o3vrnil0e2ic28tr")
        );
        // A service not in the list is still named by its source.
        let other = json!({"Records": [{"EventSource": "aws:newservice", "id": 1}]});
        assert_eq!(parse_event(&other).unwrap()[0].describe(), "a Records event from aws:newservice (1 record)");
    }

    #[test]
    fn sns_and_records_without_a_service_still_go_to_the_sns_parser() {
        // What the SNS parser cannot read stays malformed: the records name no other service.
        for bad in [
            json!({"Records": [{"Sns": {"Message": 5}}]}),
            json!({"Records": [{"EventSource": "aws:sns"}]}),
            json!({"Records": [{"eventSource": "my-app"}]}),
            json!({"Records": [{"eventSource": "aws:"}]}),
            json!({"Records": ["aws:s3"]}),
            json!({"Records": {"eventSource": "aws:s3"}}),
        ] {
            let err = parse_event(&bad).unwrap_err().to_string();
            assert!(err.contains("malformed SNS event"), "{bad}: {err}");
        }
        let err = parse_event(&json!({"Records": []})).unwrap_err().to_string();
        assert!(err.contains("Records is empty"), "{err}");
    }
}
