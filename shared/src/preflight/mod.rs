//! preflight: proves a deployed stack before its first incident, read-only or dry-run (issue #30).
//!
//! Each area answers "does this hold?" with [`Check`] rows, and says what to fix when it does not:
//! - [`rules`]: every EventBridge rule of the stack (`ListRules` on the default bus and the hub bus)
//!   tested with `TestEventPattern` against the AWS-documented sample events ([`samples`]): a rule that
//!   matches none of them, and a sample no rule routes, are named; the schedules are present.
//! - [`iam`]: `SimulatePrincipalPolicy` for each function's role and each action its code calls
//!   (`infra/iam-actions.json`), on a resource of the kind the code acts on, with the context keys the
//!   code supplies (the opt-in tag as `aws:ResourceTag` / `aws:RequestTag`, the tag keys it writes).
//! - [`dry_run`]: EC2's own `DryRun` of the mutating calls, as the caller, on an opted-in instance and
//!   volume (`DryRunOperation` holds, `UnauthorizedOperation` is to fix).
//! - [`members`]: `AssumeRole` into every served member account, naming those that fail and why.
//! - [`resources`]: the ledger table, the topics, the encryption key's policy and the dead-letter queue.
//! - [`coverage`]: every opted-in instance, database, health check and load balancer, with or without
//!   an alarm whose actions or EventBridge rules reach the suite.
//!
//! Nothing here changes anything: every call is a read, a simulation, a pattern test or a dry run. The
//! drill's manual `preflight` / `coverage` actions answer JSON; the `selfheal` CLI prints
//! [`Report::render`] and exits non-zero when something does not hold.

pub mod coverage;
pub mod dry_run;
pub mod iam;
pub mod members;
pub mod resources;
pub mod rules;
pub mod samples;

use serde::{Deserialize, Serialize};

use crate::clients::Aws;
use crate::config::Env;
use crate::error::{Error, Result};

/// The deployed stack under check: its names, from the CloudFormation stack's outputs (CLI) or the
/// drill's environment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The stack name: the functions are `<stack>-<function>`, their roles too, its rules `<stack>-…`.
    pub stack: String,
    pub account: String,
    pub region: String,
    pub partition: String,
    pub ledger_table: Option<String>,
    /// The stack's topics (output name → ARN): events, alarms, severities, chat.
    pub topics: Vec<(String, String)>,
    /// The alarms topic: an alarm whose actions publish here reaches the suite.
    pub alarms_topic: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    pub key_arn: Option<String>,
    pub opt_in_tag: String,
    pub opt_in_value: String,
    /// The served member accounts (ids) and the role to assume there.
    pub members: Vec<String>,
    pub member_role: Option<String>,
    pub external_id: Option<String>,
}

impl Deployment {
    /// The functions' role ARNs, as the template names them (`<stack>-<function>`).
    pub fn role_arn(&self, function: &str) -> String {
        format!("arn:{}:iam::{}:role/{}-{function}", self.partition, self.account, self.stack)
    }

    /// The ARN of a deployed function.
    pub fn function_arn(&self, function: &str) -> String {
        format!("arn:{}:lambda:{}:{}:function:{}-{function}", self.partition, self.region, self.account, self.stack)
    }

    /// Builds the deployment from a stack's outputs (`LedgerTableName`, `*TopicArn`, `DeadLetterQueueUrl`,
    /// `EncryptionKeyArn`), with the account and region the caller runs in.
    pub fn from_outputs<'a>(
        stack: &str,
        account: &str,
        region: &str,
        outputs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut d = Deployment::named(stack, account, region);
        for (key, value) in outputs {
            match key {
                "LedgerTableName" => d.ledger_table = Some(value.to_string()),
                "DeadLetterQueueUrl" => d.dead_letter_queue_url = Some(value.to_string()),
                "EncryptionKeyArn" => d.key_arn = Some(value.to_string()),
                "AlarmsTopicArn" => {
                    d.alarms_topic = Some(value.to_string());
                    d.topics.push((key.to_string(), value.to_string()));
                }
                k if k.ends_with("TopicArn") => d.topics.push((key.to_string(), value.to_string())),
                _ => {}
            }
        }
        d.topics.sort();
        d
    }

    /// A deployment known only by name: the rest is filled from outputs or the environment.
    pub fn named(stack: &str, account: &str, region: &str) -> Self {
        let partition = if region.starts_with("cn-") {
            "aws-cn"
        } else if region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        Deployment {
            stack: stack.to_string(),
            account: account.to_string(),
            region: region.to_string(),
            partition: partition.to_string(),
            opt_in_tag: "selfheal:enabled".to_string(),
            opt_in_value: "true".to_string(),
            ..Deployment::default()
        }
    }

    /// The deployment the drill runs in, from its environment: `SELFHEAL_PREFLIGHT_STACK`, the common
    /// settings (ledger, events topic, opt-in tag), the alarms topic it delivers to,
    /// `SELFHEAL_PREFLIGHT_TOPICS` (the other topics), `SELFHEAL_PREFLIGHT_DEAD_LETTER_QUEUE_URL`,
    /// `SELFHEAL_PREFLIGHT_KEY_ARN` and, to try the member roles, `SELFHEAL_PREFLIGHT_MEMBERS` /
    /// `SELFHEAL_PREFLIGHT_MEMBER_ROLE` / `SELFHEAL_EXTERNAL_ID`.
    pub fn from_env(env: &mut Env, account: &str, region: &str) -> Self {
        let stack = env.required("SELFHEAL_PREFLIGHT_STACK");
        let mut d = Deployment::named(&stack, account, region);
        d.ledger_table = env.optional("SELFHEAL_LEDGER_TABLE");
        d.opt_in_tag = env.string("SELFHEAL_OPT_IN_TAG", "selfheal:enabled");
        d.opt_in_value = env.string("SELFHEAL_OPT_IN_VALUE", "true");
        if let Some(t) = env.optional("SELFHEAL_TOPIC_ARN") {
            d.topics.push(("EventsTopicArn".into(), t));
        }
        if let Some(t) = env.optional("SELFHEAL_DRILL_EVENTS_TOPIC_ARN") {
            d.alarms_topic = Some(t.clone());
            d.topics.push(("AlarmsTopicArn".into(), t));
        }
        for (i, t) in list(env.optional("SELFHEAL_PREFLIGHT_TOPICS")).into_iter().enumerate() {
            d.topics.push((format!("Topic{}", i + 1), t));
        }
        let mut seen = std::collections::BTreeSet::new();
        d.topics.retain(|(_, arn)| seen.insert(arn.clone()));
        d.topics.sort();
        d.dead_letter_queue_url = env.optional("SELFHEAL_PREFLIGHT_DEAD_LETTER_QUEUE_URL");
        d.key_arn = env.optional("SELFHEAL_PREFLIGHT_KEY_ARN");
        d.members = list(env.optional("SELFHEAL_PREFLIGHT_MEMBERS"));
        if let Some(bad) = d.members.iter().find(|a| !crate::ids::is_account_id(a)) {
            env.problem("SELFHEAL_PREFLIGHT_MEMBERS", format!("{bad:?} is not a 12-digit account id"));
        }
        d.member_role = env.optional("SELFHEAL_PREFLIGHT_MEMBER_ROLE");
        d.external_id = env.optional("SELFHEAL_EXTERNAL_ID");
        d
    }
}

fn list(text: Option<String>) -> Vec<String> {
    text.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// One finding: what was checked, whether it holds, and what to do when it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// The area (`rule`, `sample`, `schedule`, `iam`, `dry-run`, `member`, `ledger`, `topic`, `key`,
    /// `queue`, `coverage`).
    pub area: String,
    /// What was checked: a rule, a role and action, an account, a resource.
    pub subject: String,
    pub holds: bool,
    /// What was seen.
    pub detail: String,
    /// What to do, when it does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn holds(area: &str, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Check { area: area.into(), subject: subject.into(), holds: true, detail: detail.into(), fix: None }
    }

    pub fn fails(area: &str, subject: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check { area: area.into(), subject: subject.into(), holds: false, detail: detail.into(), fix: Some(fix.into()) }
    }

    /// An area that could not be checked at all: the error, and how to let preflight read it.
    pub fn unreadable(area: &str, subject: impl Into<String>, err: &Error) -> Self {
        Check::fails(
            area,
            subject,
            err.to_string(),
            "give the caller the read-only permission named in the error (infra/iam-actions.json: drill)",
        )
    }
}

/// What preflight found, in the order checked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub stack: String,
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check holds: the CLI exits non-zero, and the drill answers `passed: false`, otherwise.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.holds)
    }

    pub fn failures(&self) -> usize {
        self.checks.iter().filter(|c| !c.holds).count()
    }

    /// A fixed-width table for people: one row per check, what to fix under each row that does not hold.
    pub fn render(&self) -> String {
        let area_w = self.checks.iter().map(|c| c.area.len()).max().unwrap_or(4).max(4);
        let subject_w = self.checks.iter().map(|c| c.subject.chars().count()).max().unwrap_or(7).clamp(7, 60);
        let mut out = format!("preflight of stack {}\n", self.stack);
        out.push_str(&format!("{:<5}  {:<area_w$}  {:<subject_w$}  {}\n", "", "AREA", "SUBJECT", "DETAIL"));
        for c in &self.checks {
            let mark = if c.holds { "ok" } else { "FIX" };
            out.push_str(&format!("{mark:<5}  {:<area_w$}  {:<subject_w$}  {}\n", c.area, c.subject, c.detail));
            if let Some(fix) = c.fix.as_deref().filter(|_| !c.holds) {
                out.push_str(&format!("{:<5}  {:<area_w$}  {:<subject_w$}  -> {fix}\n", "", "", ""));
            }
        }
        out.push_str(&format!(
            "{} checks, {} hold, {} to fix: {}\n",
            self.checks.len(),
            self.checks.len() - self.failures(),
            self.failures(),
            if self.passed() { "the deployment holds" } else { "NOT READY" }
        ));
        out
    }

    /// The JSON the drill's manual action answers.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "passed": self.passed(),
            "failures": self.failures(),
            "stack": self.stack,
            "checks": self.checks,
            "text": self.render(),
        })
    }
}

/// Which areas to run: everything (preflight) or the coverage alone (the scheduled report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    CoverageOnly,
}

/// Runs the checks against the deployment with the caller's credentials.
pub async fn run(aws: &Aws, d: &Deployment, scope: Scope) -> Report {
    let mut checks = Vec::new();
    let routes = rules::deployed(aws, d).await;
    if scope == Scope::Everything {
        checks.extend(rules::check(&rules::client(aws), &routes).await);
        checks.extend(iam::check(&iam::client(aws), d).await);
        checks.extend(dry_run::check(aws, d).await);
        checks.extend(members::check(aws, d).await);
        checks.extend(resources::check(aws, d).await);
    }
    checks.extend(coverage::check(aws, d, &routes).await);
    Report { stack: d.stack.clone(), checks }
}

/// The account the caller's credentials act in (`sts:GetCallerIdentity`, allowed to every principal).
pub async fn caller_account(aws: &Aws) -> Result<String> {
    let me = aws.sts().get_caller_identity().send().await.map_err(|e| Error::aws("sts", "GetCallerIdentity", e))?;
    me.account().map(str::to_string).ok_or_else(|| Error::Precondition("GetCallerIdentity named no account".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_name_the_deployment() {
        let d = Deployment::from_outputs(
            "selfheal",
            "123456789012",
            "eu-west-1",
            [
                ("LedgerTableName", "selfheal-ledger"),
                ("AlarmsTopicArn", "arn:aws:sns:eu-west-1:123456789012:alarms"),
                ("CriticalTopicArn", "arn:aws:sns:eu-west-1:123456789012:critical"),
                ("DeadLetterQueueUrl", "https://sqs/dlq"),
                ("DashboardName", "x"),
            ],
        );
        assert_eq!(d.ledger_table.as_deref(), Some("selfheal-ledger"));
        assert_eq!(d.alarms_topic.as_deref(), Some("arn:aws:sns:eu-west-1:123456789012:alarms"));
        assert_eq!(d.topics.len(), 2);
        assert_eq!(d.role_arn("drill"), "arn:aws:iam::123456789012:role/selfheal-drill");
        assert_eq!(d.function_arn("notifier"), "arn:aws:lambda:eu-west-1:123456789012:function:selfheal-notifier");
        assert_eq!(Deployment::named("s", "1", "cn-north-1").partition, "aws-cn");
    }

    #[test]
    fn the_report_fails_when_one_check_does_not_hold_and_says_what_to_fix() {
        let mut r = Report { stack: "s".into(), checks: vec![Check::holds("ledger", "t", "ACTIVE")] };
        assert!(r.passed());
        assert!(r.render().contains("the deployment holds"));
        r.checks.push(Check::fails("topic", "arn:x", "does not exist", "deploy the stack"));
        assert!(!r.passed());
        let text = r.render();
        assert!(text.contains("FIX") && text.contains("-> deploy the stack") && text.contains("NOT READY"), "{text}");
        assert_eq!(r.to_json()["failures"], 1);
    }

    #[test]
    fn the_drills_environment_names_the_deployment_and_bad_members_are_named() {
        let mut env = Env::from_map(
            [
                ("SELFHEAL_PREFLIGHT_STACK", "prod"),
                ("SELFHEAL_LEDGER_TABLE", "ledger"),
                ("SELFHEAL_TOPIC_ARN", "arn:events"),
                ("SELFHEAL_DRILL_EVENTS_TOPIC_ARN", "arn:alarms"),
                ("SELFHEAL_PREFLIGHT_TOPICS", "arn:critical, arn:events"),
                ("SELFHEAL_PREFLIGHT_MEMBERS", "111111111111,nope"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let d = Deployment::from_env(&mut env, "123456789012", "us-east-1");
        assert_eq!(d.stack, "prod");
        assert_eq!(d.topics.len(), 3, "{:?}", d.topics);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("SELFHEAL_PREFLIGHT_MEMBERS") && err.contains("nope"), "{err}");
    }
}
