//! Healing an instance outside any Auto Scaling group: the escalation ladder and which [`Step`] to
//! take (the steps themselves are the function's contract, in `mod.rs`), and carrying a step out (reboot, stop/start, twin launch + EIP move).

use std::time::Duration;

use super::ec2;
use super::facts::InstanceFacts;
use super::intake::Failure;
use super::Step;
use crate::config::CommonConfig;
use crate::error::{Error, Result};
use crate::guardrails::{is_opted_in, ActionReport};

/// The standalone escalation ladder for a failure.
pub fn ladder(failure: Failure, state: &str, ebs_backed: bool) -> Vec<Step> {
    let mut steps = match (failure, state) {
        (Failure::Terminated, _) | (_, "terminated") => vec![Step::Replace],
        (_, "stopped") | (Failure::Stopped, _) => vec![Step::StopStart, Step::Replace],
        (Failure::System | Failure::Retirement, _) => vec![Step::StopStart, Step::Replace],
        (Failure::Instance | Failure::Unknown, _) => vec![Step::Reboot, Step::StopStart, Step::Replace],
    };
    // Instance-store roots cannot stop; a stopped/terminated one has nothing to start either.
    if !ebs_backed {
        steps.retain(|s| *s != Step::StopStart);
    }
    if steps.is_empty() {
        steps.push(Step::Replace);
    }
    steps
}

/// The step to take: a manual choice, else the ladder position after `prior` acted steps.
pub fn choose_step(ladder: &[Step], prior: usize, requested: Option<Step>) -> Step {
    if let Some(s) = requested {
        return s;
    }
    ladder.get(prior).or(ladder.last()).copied().unwrap_or(Step::Replace)
}
/// A stable RunInstances client token (≤ 64 ASCII chars) for one (instance, event): FNV-1a.
pub fn client_token(instance_id: &str, event_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance_id.bytes().chain([0u8]).chain(event_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let id: String = instance_id.chars().take(40).collect();
    format!("selfheal-{id}-{h:016x}")
}
/// Polls until `id` reaches `want`; the state reached last otherwise.
async fn wait_state(ec2c: &aws_sdk_ec2::Client, id: &str, want: &str, wait: Duration, poll: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let state = ec2::describe(ec2c, id).await?.map(|f| f.state).unwrap_or_else(|| "unknown".into());
        if state == want {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout { what: format!("{id} to be {want} (it is {state})"), seconds: wait.as_secs() });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Why a replacement may not start: an Elastic IP of the instance that is not opted in could not be
/// taken over by the replacement (the role may associate opted-in addresses only), so launching would
/// leave two instances and the address on the broken one. Checked before anything is launched.
pub fn unmovable_eips(id: &str, eips: &[ec2::ElasticIp], config: &CommonConfig) -> Option<String> {
    let blocked: Vec<String> = eips
        .iter()
        .filter(|e| !is_opted_in(e.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), config))
        .map(ec2::ElasticIp::name)
        .collect();
    if blocked.is_empty() {
        return None;
    }
    Some(format!(
        "{id} would be replaced, but its Elastic IP {} is not opted in (needs tag {}={}): the replacement \
         could not take it over; tag the address and heal again, or replace {id} by hand. Nothing launched",
        blocked.join(", "),
        config.opt_in_tag,
        config.opt_in_value
    ))
}

/// Carries out one standalone step (live). `eips` are the instance's Elastic IPs, read (and checked
/// by [`unmovable_eips`]) before the step was chosen.
pub(super) async fn standalone_step(
    ec2c: &aws_sdk_ec2::Client,
    inst: &InstanceFacts,
    step: Step,
    eips: &[ec2::ElasticIp],
    token: &str,
    wait: Duration,
    poll: Duration,
) -> Result<ActionReport> {
    let id = inst.id.as_str();
    match step {
        Step::Reboot => {
            ec2::reboot(ec2c, id).await?;
            tracing::info!(instance = %id, "rebooted");
            Ok(ActionReport::acted(format!("rebooted {id}")))
        }
        Step::StopStart => {
            if inst.state != "stopped" {
                ec2::stop(ec2c, id).await?;
                wait_state(ec2c, id, "stopped", wait, poll).await?;
            }
            ec2::start(ec2c, id).await?;
            wait_state(ec2c, id, "running", wait, poll).await?;
            tracing::info!(instance = %id, "stopped and started on new hardware");
            Ok(ActionReport::acted(format!("stopped and started {id} (moves it to new hardware); it is running")))
        }
        Step::Replace => {
            let new_id = ec2::launch_twin(ec2c, inst, token).await?;
            tracing::info!(instance = %id, replacement = %new_id, "replacement launched");
            if let Err(e) = wait_state(ec2c, &new_id, "running", wait, poll).await {
                return Ok(ActionReport::failed(format!(
                    "replacement {new_id} for {id} did not come up ({e}); {id} was NOT terminated"
                ))
                .detail("replacement", &new_id));
            }
            let mut moved = Vec::new();
            for eip in eips {
                if let Err(e) = ec2::move_eip(ec2c, eip.allocation_id.as_deref(), &eip.public_ip, &new_id).await {
                    return Ok(ActionReport::failed(format!(
                        "replacement {new_id} for {id} is running, but moving Elastic IP {} failed ({e}); {id} was NOT \
                         terminated: move the address and terminate {id} by hand",
                        eip.name()
                    ))
                    .detail("replacement", &new_id)
                    .detail("elasticIps", &moved));
                }
                tracing::info!(instance = %id, replacement = %new_id, eip = %eip.public_ip, "elastic ip moved");
                moved.push(eip.public_ip.clone());
            }
            if inst.state != "terminated" {
                ec2::terminate(ec2c, id).await?;
            }
            Ok(ActionReport::acted(format!(
                "replaced standalone {id} with {new_id}{}; {id} terminated",
                if moved.is_empty() { String::new() } else { format!(", moved Elastic IP {}", moved.join(", ")) }
            ))
            .detail("replacement", &new_id)
            .detail("elasticIps", &moved)
            .detail("launchTemplate", inst.launch_template().map(|(i, v)| format!("{i}:{v}")))
            .detail("imageId", &inst.image_id)
            .detail("instanceType", &inst.instance_type)
            .detail("subnetId", &inst.subnet_id)
            .detail("securityGroups", &inst.security_group_ids))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_escalates_and_clamps() {
        let l = ladder(Failure::Instance, "running", true);
        assert_eq!(l, vec![Step::Reboot, Step::StopStart, Step::Replace]);
        assert_eq!(choose_step(&l, 0, None), Step::Reboot);
        assert_eq!(choose_step(&l, 1, None), Step::StopStart);
        assert_eq!(choose_step(&l, 7, None), Step::Replace);
        assert_eq!(choose_step(&l, 0, Some(Step::Replace)), Step::Replace);
        assert_eq!(ladder(Failure::System, "running", true), vec![Step::StopStart, Step::Replace]);
        assert_eq!(ladder(Failure::Unknown, "stopped", true), vec![Step::StopStart, Step::Replace]);
        assert_eq!(ladder(Failure::Terminated, "terminated", true), vec![Step::Replace]);
        assert_eq!(ladder(Failure::System, "running", false), vec![Step::Replace]);
    }

    #[test]
    fn replacement_tags_and_client_token() {
        use crate::healer::facts::{LT_ID_TAG, LT_VERSION_TAG};
        use crate::healer::REPLACES_TAG;

        let f = InstanceFacts {
            id: "i-0abc".into(),
            tags: vec![
                ("Name".into(), "web".into()),
                (LT_ID_TAG.into(), "lt-1".into()),
                (LT_VERSION_TAG.into(), "3".into()),
            ],
            ..Default::default()
        };
        assert_eq!(f.launch_template(), Some(("lt-1", "3")));
        assert_eq!(
            f.replacement_tags(),
            vec![("Name".to_string(), "web".to_string()), (REPLACES_TAG.to_string(), "i-0abc".to_string())]
        );
        let t = client_token("i-0123456789abcdef0", "alarm:x:2026");
        assert_eq!(t, client_token("i-0123456789abcdef0", "alarm:x:2026"));
        assert_ne!(t, client_token("i-0123456789abcdef0", "alarm:x:2027"));
        assert!(t.len() <= 64 && t.is_ascii());
    }

    #[test]
    fn a_replacement_needs_every_elastic_ip_opted_in() {
        let mut env = crate::config::Env::from_map([("SELFHEAL_LEDGER_TABLE".to_string(), "t".to_string())].into());
        let config = CommonConfig::read(&mut env, "test");
        let eip = |alloc: Option<&str>, ip: &str, tags: &[(&str, &str)]| ec2::ElasticIp {
            allocation_id: alloc.map(str::to_string),
            public_ip: ip.into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert_eq!(unmovable_eips("i-1", &[], &config), None, "no address, nothing to take over");
        let tagged = eip(Some("eipalloc-1"), "203.0.113.10", &[("selfheal:enabled", "true")]);
        assert_eq!(unmovable_eips("i-1", std::slice::from_ref(&tagged), &config), None);
        let bare = eip(Some("eipalloc-2"), "203.0.113.11", &[("Name", "web")]);
        let classic = eip(None, "198.51.100.7", &[("selfheal:enabled", "no")]);
        let why = unmovable_eips("i-1", &[tagged, bare, classic], &config).expect("refused");
        assert!(why.contains("203.0.113.11 (eipalloc-2), 198.51.100.7 is not opted in"), "{why}");
        assert!(!why.contains("eipalloc-1"), "{why}");
        assert!(why.contains("needs tag selfheal:enabled=true") && why.ends_with("Nothing launched"), "{why}");
    }
}
