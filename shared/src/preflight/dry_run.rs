//! EC2's own dry run of the mutating calls the caller would make: `StopInstances` and
//! `TerminateInstances` with `DryRun=true` on each drill-tagged instance (the drill's fault
//! injection). EC2 answers `DryRunOperation` when the call would have been allowed (holds) and
//! `UnauthorizedOperation` when not (to fix); nothing is stopped or terminated either way. The
//! functions' own calls are proven for their roles by [`super::iam`]'s simulation: a dry run proves
//! only the caller's credentials.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;

use super::{Check, Deployment};
use crate::clients::Aws;
use crate::error::Error;

/// The drill tag (`selfheal:drill = true`): what a live drill may inject faults into.
const DRILL_TAG: &str = "selfheal:drill";

/// How EC2 answered a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRun {
    /// `DryRunOperation`: the call would have succeeded.
    WouldSucceed,
    /// `UnauthorizedOperation` or any other error: what EC2 said.
    Refused(String),
}

/// Reads an SDK result of a `DryRun=true` call.
pub fn answer<T, E>(result: std::result::Result<T, aws_sdk_ec2::error::SdkError<E>>) -> DryRun
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => DryRun::Refused("EC2 acted instead of answering the dry run".into()),
        Err(e) if e.code() == Some("DryRunOperation") => DryRun::WouldSucceed,
        Err(e) => DryRun::Refused(Error::aws("ec2", "DryRun", e).to_string()),
    }
}

pub async fn check(aws: &Aws, _d: &Deployment) -> Vec<Check> {
    check_with(&aws_sdk_ec2::Client::new(&aws.sdk)).await
}

/// The dry-run rows, with `ec2`.
pub async fn check_with(ec2: &aws_sdk_ec2::Client) -> Vec<Check> {
    let found = ec2
        .describe_instances()
        .filters(Filter::builder().name(format!("tag:{DRILL_TAG}")).values("true").build())
        .filters(Filter::builder().name("instance-state-name").values("running").values("stopped").build())
        .send()
        .await;
    let ids: Vec<String> = match found {
        Ok(out) => out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect(),
        Err(e) => {
            return vec![Check::unreadable(
                "dry-run",
                "drill-tagged instances",
                &Error::aws("ec2", "DescribeInstances", e),
            )]
        }
    };
    if ids.is_empty() {
        return vec![Check::holds(
            "dry-run",
            "drill-tagged instances",
            "none tagged selfheal:drill=true: nothing to dry-run",
        )];
    }
    let mut out = Vec::new();
    for id in ids.iter().take(3) {
        let stop = answer(ec2.stop_instances().instance_ids(id).dry_run(true).send().await);
        let terminate = answer(ec2.terminate_instances().instance_ids(id).dry_run(true).send().await);
        for (call, result) in [("StopInstances", stop), ("TerminateInstances", terminate)] {
            out.push(match result {
                DryRun::WouldSucceed => Check::holds("dry-run", format!("ec2:{call} {id}"), "DryRunOperation: would succeed"),
                DryRun::Refused(why) => Check::fails(
                    "dry-run",
                    format!("ec2:{call} {id}"),
                    why,
                    "the caller may not inject this fault: check the drill role's InjectInstanceFaults statement and the instance's selfheal:drill tag",
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::operation::stop_instances::StopInstancesError;
    use aws_sdk_ec2::operation::terminate_instances::TerminateInstancesError;
    use aws_sdk_ec2::types::{Instance, Reservation};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_types::error::ErrorMetadata;

    // moto enforces no IAM, so it never answers UnauthorizedOperation: EC2's answers are mocked, shaped
    // from the API reference (DryRunOperation when the call would succeed, UnauthorizedOperation not).
    #[tokio::test]
    async fn a_call_the_caller_may_not_make_is_to_fix_and_one_it_may_holds() {
        let found = mock!(aws_sdk_ec2::Client::describe_instances).then_output(|| {
            DescribeInstancesOutput::builder()
                .reservations(
                    Reservation::builder().instances(Instance::builder().instance_id("i-0drill").build()).build(),
                )
                .build()
        });
        let stop =
            mock!(aws_sdk_ec2::Client::stop_instances).match_requests(|r| r.dry_run() == Some(true)).then_error(|| {
                StopInstancesError::generic(
                    ErrorMetadata::builder()
                        .code("DryRunOperation")
                        .message("Request would have succeeded, but DryRun flag is set.")
                        .build(),
                )
            });
        let terminate = mock!(aws_sdk_ec2::Client::terminate_instances)
            .match_requests(|r| r.dry_run() == Some(true))
            .then_error(|| {
                TerminateInstancesError::generic(
                    ErrorMetadata::builder()
                        .code("UnauthorizedOperation")
                        .message("You are not authorized to perform this operation.")
                        .build(),
                )
            });
        let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &stop, &terminate]);
        let rows = check_with(&ec2).await;
        assert_eq!(rows.len(), 2, "{rows:#?}");
        assert!(rows[0].holds && rows[0].subject == "ec2:StopInstances i-0drill", "{rows:#?}");
        assert!(!rows[1].holds && rows[1].detail.contains("UnauthorizedOperation"), "{rows:#?}");
        assert_eq!((stop.num_calls(), terminate.num_calls()), (1, 1));
    }
}
