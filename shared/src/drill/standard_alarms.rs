//! The drill's manual `keep-alarms` action (issue #30): keeps the standard alarms of the stack's
//! account and region ([`crate::standard_alarms`]), when `SELFHEAL_STANDARD_ALARMS` is true. The
//! stack's `KeepStandardAlarms` schedule runs it; it needs no architecture.

use serde_json::Value;

use super::Drill;
use crate::config::Env;
use crate::error::Result;
use crate::preflight::{self, Deployment};
use crate::standard_alarms::{self, Settings};
use crate::trigger::{parse_event, Trigger, TriggerKind};

/// The trigger of a manual `keep-alarms` invocation, when the payload is one.
pub fn requested(payload: &Value) -> Option<Trigger> {
    let mut triggers = parse_event(payload).ok()?;
    let t = triggers.pop()?;
    match &t.kind {
        TriggerKind::Manual(m) if m.action == "keep-alarms" => Some(t),
        _ => None,
    }
}

impl Drill {
    /// Keeps the standard alarms of the stack the drill is deployed in.
    pub async fn keep_standard_alarms(&self, t: &Trigger) -> Result<Value> {
        let account = preflight::caller_account(&self.ctx.aws).await?;
        let region = self.ctx.aws.sdk.region().map(|r| r.to_string()).unwrap_or_default();
        let mut env = Env::from_process();
        let d = Deployment::from_env(&mut env, &account, &region);
        let settings = Settings::read(&mut env);
        env.finish()?;
        self.keep_standard_alarms_of(&d, &settings, &aws_sdk_cloudwatch::Client::new(&self.ctx.aws.sdk), t).await
    }

    /// Keeps the standard alarms of `d` with `settings`, reading and writing alarms with `cw`.
    pub async fn keep_standard_alarms_of(
        &self,
        d: &Deployment,
        settings: &Settings,
        cw: &aws_sdk_cloudwatch::Client,
        t: &Trigger,
    ) -> Result<Value> {
        standard_alarms::keep(&self.ctx, &self.ctx.aws, cw, d, settings, t).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_manual_keep_alarms_invocation_is_one() {
        let t = requested(&json!({"source": "selfheal.manual", "action": "keep-alarms", "dryRun": true})).unwrap();
        let TriggerKind::Manual(m) = t.kind else { panic!("manual") };
        assert_eq!(m.dry_run, Some(true));
        assert!(requested(&json!({"source": "selfheal.manual", "action": "coverage"})).is_none());
        assert!(requested(&json!({"nonsense": true})).is_none());
    }
}
