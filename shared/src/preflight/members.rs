//! Every served member account, tried for real: `sts:AssumeRole` into its `selfheal-preflight` role
//! (infra/member.yaml: read-only, trusted by the hub's drill role with the same external id as the
//! functions' roles), then `iam:GetRole` of each function's member role `selfheal-<function>` there,
//! whose trust must name the hub role `<stack>-<function>`. Each account that fails is named with why:
//! the role cannot be assumed (StackSet not deployed there, another external id, outside the
//! organization), a function's role is missing, or it trusts another hub.

use super::{Check, Deployment};
use crate::clients::Aws;
use crate::error::Error;

/// The member role preflight assumes, unless the deployment names another.
pub const PREFLIGHT_ROLE: &str = "selfheal-preflight";

/// The functions that act in member accounts (each has its own member role).
pub const ACTING: &[&str] = &["instance-healer", "db-failover", "dns-failover", "backup-enforcer", "zone-evacuator"];

pub async fn check(aws: &Aws, d: &Deployment) -> Vec<Check> {
    check_with(&aws.sts(), aws, d).await
}

/// The member rows, assuming with `sts`.
pub async fn check_with(sts: &aws_sdk_sts::Client, aws: &Aws, d: &Deployment) -> Vec<Check> {
    if d.members.is_empty() {
        return vec![Check::holds("member", "member accounts", "none given: the suite acts in its own account, or run `selfheal preflight --members …` as a principal the member stacks trust (PreflightPrincipalArn)")];
    }
    let role_name = d.member_role.clone().unwrap_or_else(|| PREFLIGHT_ROLE.to_string());
    let mut out = Vec::new();
    for account in &d.members {
        out.push(match one(sts, aws, d, account, &role_name).await {
            Ok(detail) => Check::holds("member", account.clone(), detail),
            Err((detail, fix)) => Check::fails("member", account.clone(), detail, fix),
        });
    }
    out
}

async fn one(
    sts: &aws_sdk_sts::Client,
    aws: &Aws,
    d: &Deployment,
    account: &str,
    role_name: &str,
) -> Result<String, (String, String)> {
    let role_arn = format!("arn:{}:iam::{account}:role/{role_name}", d.partition);
    let assumed = sts
        .assume_role()
        .role_arn(&role_arn)
        .role_session_name("selfheal-preflight")
        .set_external_id(d.external_id.clone())
        .duration_seconds(900)
        .send()
        .await
        .map_err(|e| {
            (
                format!("cannot assume {role_arn}: {}", Error::aws("sts", "AssumeRole", e)),
                "deploy infra/member.yaml there (the StackSet) with this hub's account, stack name and external id"
                    .to_string(),
            )
        })?;
    let creds =
        assumed.credentials().ok_or_else(|| ("AssumeRole answered no credentials".to_string(), "retry".to_string()))?;
    let credentials = aws_sdk_sts::config::Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_string()),
        None,
        "selfheal-preflight",
    );
    let there = aws.with_credentials(credentials, &d.region);
    let me = there.sts().get_caller_identity().send().await.map_err(|e| {
        (Error::aws("sts", "GetCallerIdentity", e).to_string(), "check the member role's session".to_string())
    })?;
    if me.account() != Some(account) {
        return Err((
            format!("the assumed role acts in {:?}, not {account}", me.account()),
            "name the member account's own role".into(),
        ));
    }
    let iam = aws_sdk_iam::Client::new(&there.sdk);
    let mut problems = Vec::new();
    for function in ACTING {
        let name = format!("selfheal-{function}");
        match iam.get_role().role_name(&name).send().await {
            Err(e) => problems.push(format!("{name}: {}", Error::aws("iam", "GetRole", e))),
            Ok(role) => {
                let trust = role.role().and_then(|r| r.assume_role_policy_document()).unwrap_or_default();
                let hub_role = format!("role/{}-{function}", d.stack);
                if !trust.contains(&hub_role) && !trust.contains(&hub_role.replace('/', "%2F")) {
                    problems.push(format!("{name} does not trust the hub role {hub_role}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(format!("assumed {role_name}; the {} function roles trust this hub", ACTING.len()))
    } else {
        Err((problems.join("; "), "update the member StackSet (infra/member.yaml) with this hub's stack name".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_smithy_mocks::{mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    // moto assumes any role: STS's refusal is mocked, shaped from the API reference (AccessDenied).
    #[tokio::test]
    async fn a_role_that_cannot_be_assumed_names_the_account_and_why() {
        let refuse = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| {
                r.role_arn() == Some("arn:aws:iam::111111111111:role/selfheal-preflight")
                    && r.external_id() == Some("xid")
            })
            .then_error(|| {
                AssumeRoleError::generic(
                    ErrorMetadata::builder()
                        .code("AccessDenied")
                        .message("User is not authorized to perform: sts:AssumeRole")
                        .build(),
                )
            });
        let sts = mock_client!(aws_sdk_sts, [&refuse]);
        let mut d = Deployment::named("s", "123456789012", "us-east-1");
        d.members = vec!["111111111111".into()];
        d.external_id = Some("xid".into());
        let aws = Aws::from_sdk_config(aws_types::SdkConfig::builder().build());
        let rows = check_with(&sts, &aws, &d).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].subject, "111111111111");
        assert!(!rows[0].holds && rows[0].detail.contains("AccessDenied"), "{rows:?}");
        assert!(rows[0].fix.as_deref().unwrap().contains("infra/member.yaml"));
        let none = check_with(&sts, &aws, &Deployment::named("s", "123456789012", "us-east-1")).await;
        assert!(none[0].holds && none[0].detail.contains("none given"));
    }
}
