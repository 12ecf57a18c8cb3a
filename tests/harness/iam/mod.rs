//! The IAM evaluator: every AWS call a function makes in a test, with the tags it writes and the tags
//! on what it touches, is evaluated against the statements of the role it runs as (its role in
//! `infra/template.yaml`, or in a member account its `selfheal-<function>` role in
//! `infra/member.yaml`, whose trust policy is evaluated for the `AssumeRole` that reached it), as IAM
//! would: action, resource and every condition must match; an explicit `Deny` wins; no matching
//! `Allow` is a denial. A call the policy would deny fails the test that made it.
//!
//! How a call is seen: [`record`] turns on the call log's request recording
//! ([`selfheal::clients::CallLog::record_requests`]), whose observer sees each request just before it
//! is first sent; for a mutating call it asks the emulator, with the same credentials and region, for
//! the tags of what the call names (instances, volumes, snapshots, Elastic IPs, Auto Scaling groups,
//! databases, clusters and their snapshots, load balancers, the load balancer an ARC zonal shift call
//! is about, the DynamoDB table backup-enforcer changes) before the call changes or removes them, and where an `AssumeRole` target sits in the
//! organization; [`record_with_arc`] also asks the test's ARC stand-in which resource a shift id names
//! (`UpdateZonalShift` and `CancelZonalShift` carry nothing else). The request itself gives the rest:
//! the resource ids, the tags written (`TagSpecification`, `Tags`), the external id presented. The credentials that
//! signed a call say where it ran: the function's own (the hub role), or those an `AssumeRole` in the
//! same log returned (that member account's role).
//!
//! The evaluator knows the subset of IAM the templates use (`StringEquals`, `StringLike`,
//! `StringNotEquals`, `StringNotLike`, `ArnEquals`, `ArnLike`, `Null`, the `ForAllValues:` and
//! `ForAnyValue:` qualifiers; the keys `aws:ResourceTag/*`, `aws:RequestTag/*`, `aws:TagKeys`,
//! `ec2:CreateAction`, `iam:PassedToService`, `aws:ResourceAccount`, `s3:ResourceAccount` (a
//! bucket's owner: the caller's account, as the sweep acts only on its own buckets), `aws:ResourceOrgID`,
//! `aws:ResourceOrgPaths`, `aws:PrincipalArn`, `aws:PrincipalOrgID`, `sts:ExternalId`,
//! `arc-zonal-shift:ResourceIdentifier`, `elasticloadbalancing:ResourceTag/*`,
//! `autoscaling:ResourceTag/*` and `UpdateAutoScalingGroup`'s `autoscaling:LaunchConfigurationName`,
//! `LaunchTemplateVersionSpecified`, `InstanceTypes`, `MinSize`, `MaxSize`, `VPCZoneIdentifiers`) and
//! how each operation the functions call is authorized (which resources, which implicit `ec2:CreateTags` or
//! `rds:AddTagsToResource` a tag-on-create adds). Anything else (an operator, a key, an intrinsic,
//! an operation it does not model) is an error, never a silent allow.
//!
//! What it found that waits for a fix in the templates is listed in [`KNOWN_MISMATCHES`], with the
//! fix: reported by the tests that meet it, and ratcheted ([`assert_still_known`]) so an entry goes
//! when its fix lands. Any other denial fails the test.
//!
//! Its parts: `observer.rs` (what is read from the emulator before each call), `form.rs` (the request
//! parameters), `template.rs` (the templates, their intrinsics resolved), `policy.rs` (a role's
//! statements and IAM's decision over them), `conditions.rs` (operators and condition keys),
//! `calls.rs` (what each recorded call asks IAM), `evaluate.rs` (a deployment's calls, evaluated) and
//! `known.rs` (the known mismatches and the assertions tests make); `tests.rs` holds the unit tests
//! that cut across them. The tests that drive real calls through it against moto are in
//! `tests/emulator/iam_conditions/`.

mod calls;
mod conditions;
mod evaluate;
mod form;
mod known;
mod observer;
mod policy;
mod template;
#[cfg(test)]
mod tests;

pub use conditions::glob;
pub use evaluate::{evaluate, Deployment, Evaluation};
pub use known::{assert_all_allowed, assert_allowed, assert_still_known, Known, KNOWN_MISMATCHES};
pub use observer::{record, record_with_arc, record_with_shifts, ShiftResolver};

/// The organization every test deployment is in (every account the hub serves belongs to it).
const ORG: &str = "o-selfhealtest";
/// The hub's account when the configuration does not name it: moto's default.
pub const DEFAULT_HUB: &str = "123456789012";
/// The hub stack's name and region (its roles are `selfheal-<function>`, as the member trust expects).
const STACK_NAME: &str = "selfheal";
const STACK_REGION: &str = crate::REGION;
