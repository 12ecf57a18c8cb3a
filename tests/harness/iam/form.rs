//! The request parameters of a recorded call: the query-protocol form bodies EC2, Auto Scaling, RDS,
//! STS, SNS and Elastic Load Balancing send (`TagSpecification.N`, `Tags.member.N`, `InstanceId.N`),
//! decoded; and the path segments of a REST call's URI (Route 53, AWS Backup, ARC zonal shift).

use std::collections::BTreeMap;

/// A query-protocol form body, decoded.
#[derive(Debug, Default)]
pub(super) struct Form(pub(super) BTreeMap<String, String>);

pub(super) fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            (b'%', Some(h), Some(l)) => Some((h * 16 + l) as u8),
            _ => None,
        };
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path segments of a request URI, each decoded on its own (an ARN in one segment keeps its
/// encoded `/`: `/managedresources/arn%3Aaws%3A...%2Fapp%2Fweb%2F1` is two segments).
pub(super) fn uri_segments(uri: &str) -> Vec<String> {
    let after_scheme = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let path = after_scheme.find('/').map(|i| &after_scheme[i..]).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or(path);
    path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect()
}

impl Form {
    pub(super) fn parse(body: &str) -> Form {
        let body = body.trim();
        if body.starts_with('{') || body.starts_with('<') {
            return Form::default();
        }
        Form(
            body.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).or_else(|| self.0.get(&format!("{key}.1")).map(String::as_str))
    }

    /// `prefix.1`, `prefix.2`, ... (and `prefix` itself).
    pub(super) fn list(&self, prefix: &str) -> Vec<String> {
        let mut out: Vec<(usize, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?;
                if rest.is_empty() {
                    return Some((0, v.clone()));
                }
                rest.strip_prefix('.')?.parse::<usize>().ok().map(|n| (n, v.clone()))
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Tags under `prefix`: `prefix.<anything>.Key` with its `.Value`.
    pub(super) fn tags(&self, prefix: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(k, key)| {
                let middle = k.strip_prefix(prefix)?.strip_prefix('.')?.strip_suffix(".Key")?;
                // Not a deeper structure's key (`TagSpecification.1.Tag.1.Key` under `TagSpecification`).
                if middle.split('.').count() > 2 {
                    return None;
                }
                let value = self.0.get(&format!("{prefix}.{middle}.Value")).cloned().unwrap_or_default();
                Some((key.clone(), value))
            })
            .collect()
    }

    /// EC2's `TagSpecification.N`: (resource type, tags).
    pub(super) fn tag_specifications(&self) -> Vec<(String, Vec<(String, String)>)> {
        let mut out = Vec::new();
        for n in 1.. {
            let Some(rt) = self.0.get(&format!("TagSpecification.{n}.ResourceType")) else { break };
            out.push((rt.clone(), self.tags(&format!("TagSpecification.{n}.Tag"))));
        }
        out
    }

    /// The tags the request's tag specifications put on resources of `resource_type`.
    pub(super) fn tags_for(&self, resource_type: &str) -> Vec<(String, String)> {
        self.tag_specifications().into_iter().filter(|(rt, _)| rt == resource_type).flat_map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_query_form_is_read_and_a_single_list_item_reads_as_the_value() {
        assert!(Form::parse(r#"{"TableName": "t"}"#).0.is_empty(), "JSON is not a form");
        assert!(Form::parse("<ChangeResourceRecordSetsRequest/>").0.is_empty(), "nor is XML");
        let f = Form::parse("InstanceId.1=i-1&Empty=&Flag&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr");
        assert_eq!(f.get("InstanceId"), Some("i-1"));
        assert_eq!((f.get("Empty"), f.get("Flag"), f.get("Missing")), (Some(""), Some(""), None));
        assert_eq!(f.get("RoleArn"), Some("arn:aws:iam::1:role/r"));
        assert!(f.list("Missing").is_empty() && f.tags("Tag").is_empty() && f.tag_specifications().is_empty());
        let ordered = Form::parse("Id.10=j&Id.2=b&Id.1=a&Id=x&IdOther.1=no");
        assert_eq!(ordered.list("Id"), ["x", "a", "b", "j"], "numbered, in order, after the bare key");
        assert_eq!(
            uri_segments("http://127.0.0.1:9/managedresources/arn%3Aaws%3Aelasticloadbalancing%3Aus-east-1%3A1%3Aloadbalancer%2Fapp%2Fweb%2F1?x=1"),
            ["managedresources", "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/web/1"],
            "an encoded / stays inside its segment"
        );
        assert_eq!(uri_segments("https://h/zonalshifts/abc/"), ["zonalshifts", "abc"]);
        assert!(uri_segments("http://h").is_empty() && uri_segments("/").is_empty());
    }
}
