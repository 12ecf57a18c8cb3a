//! The evaluator's unit tests that cut across its parts: it behaves like IAM on conditions, policies
//! and request parameters, and refuses what it does not know; and whole evaluations of hand-made
//! recorded calls catch the two historical bugs (deletes conditioned on a tag never written, opt-in
//! never checked) and a wrong trust. Each part's own small tests are beside it.

use selfheal::clients::CallRecord;
use serde_json::{json, Value as Json};

use super::calls::reads_anywhere;
use super::conditions::{block_holds, Context};
use super::form::{percent_decode, Form};
use super::observer::is_ec2_id;
use super::policy::{decide, statements_of, Decision, Request};
use super::{evaluate, Deployment, DEFAULT_HUB, STACK_REGION};

fn ctx_of(pairs: &[(&str, &[&str])]) -> Context {
    pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.iter().map(|s| s.to_string()).collect())).collect()
}

#[test]
fn the_evaluator_behaves_like_iam_and_refuses_what_it_does_not_know() {
    let c = ctx_of(&[
        ("aws:ResourceTag/selfheal:enabled", &["true"]),
        ("aws:TagKeys", &["a", "b"]),
        ("aws:PrincipalArn", &["arn:aws:iam::123456789012:role/selfheal-db-failover"]),
    ]);
    let holds = |op: &str, key: &str, wanted: Json| block_holds(op, key, &wanted, &c);
    // Present and absent keys, plain and negated, as IAM evaluates them.
    assert_eq!(holds("StringEquals", "aws:ResourceTag/selfheal:enabled", json!("true")), Ok(true));
    assert_eq!(holds("StringEquals", "aws:resourcetag/SELFHEAL:ENABLED", json!(["x", "true"])), Ok(true));
    assert_eq!(holds("StringEquals", "aws:ResourceTag/selfheal:enabled", json!("TRUE")), Ok(false));
    assert_eq!(holds("StringEquals", "aws:ResourceTag/selfheal:created-by", json!("backup-enforcer")), Ok(false));
    assert_eq!(holds("StringNotEquals", "aws:ResourceTag/selfheal:created-by", json!("x")), Ok(true));
    assert_eq!(holds("StringLike", "aws:ResourceTag/selfheal:enabled", json!("t*")), Ok(true));
    assert_eq!(holds("StringNotLike", "aws:ResourceTag/selfheal:enabled", json!("t*")), Ok(false));
    assert_eq!(holds("Null", "aws:RequestTag/selfheal:enabled", json!("true")), Ok(true));
    assert_eq!(holds("Null", "aws:ResourceTag/selfheal:enabled", json!(true)), Ok(false));
    assert_eq!(holds("Null", "aws:ResourceTag/selfheal:enabled", json!("false")), Ok(true));
    assert_eq!(holds("ForAllValues:StringEquals", "aws:TagKeys", json!(["a", "b", "c"])), Ok(true));
    assert_eq!(holds("ForAllValues:StringEquals", "aws:TagKeys", json!(["a"])), Ok(false));
    assert_eq!(holds("ForAllValues:StringEquals", "aws:RequestTag/x", json!("y")), Ok(true), "absent: vacuous");
    assert_eq!(holds("ForAnyValue:StringEquals", "aws:TagKeys", json!(["b"])), Ok(true));
    assert_eq!(holds("ForAnyValue:StringLike", "aws:RequestTag/x", json!("*")), Ok(false), "absent");
    assert_eq!(
        holds("ArnEquals", "aws:PrincipalArn", json!("arn:aws:iam::123456789012:role/selfheal-db-failover")),
        Ok(true)
    );
    assert_eq!(holds("ArnLike", "aws:PrincipalArn", json!("arn:aws:iam::*:role/selfheal-*")), Ok(true));
    assert_eq!(
        holds("ArnEquals", "aws:PrincipalArn", json!("arn:aws:iam::123456789012:role/selfheal-instance-healer")),
        Ok(false)
    );
    // What it does not know is an error, never an answer.
    for op in ["NumericEquals", "StringEqualsIfExists", "ForAnyValue:Null", "ForSome:StringEquals", "Bool"] {
        assert!(holds(op, "aws:TagKeys", json!("a")).is_err(), "{op}");
    }
    for key in ["aws:PrincipalTag/team", "ec2:InstanceType", "aws:SourceIp", "aws:ResourceTag/"] {
        assert!(holds("StringEquals", key, json!("a")).is_err(), "{key}");
    }
    // A statement a request reaches is checked whole, even the blocks after one that fails, and
    // whatever its effect: an unknown key or operator there is an error, not a pass or a deny.
    let reached = |effect: &str, condition: Json| {
        let doc = json!({"Statement": [{"Sid": "S", "Effect": effect, "Action": "ec2:StopInstances",
            "Resource": "*", "Condition": condition}]});
        let policy = statements_of(&doc, "t").unwrap();
        let r = Request { action: "ec2:StopInstances".into(), resource: "*".into(), context: c.clone() };
        decide(&policy, &r, None)
    };
    let unknown_key = reached("Allow", json!({"StringEquals": {"ec2:ResourceTag/x": "y"}}));
    assert!(unknown_key.unwrap_err().contains("ec2:ResourceTag/x"));
    assert!(reached("Deny", json!({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}})).is_err());
    let second_block = json!({"StringEquals": {"aws:ResourceTag/x": "y"}, "Bool": {"aws:SecureTransport": "true"}});
    assert!(reached("Allow", second_block).is_err());
    let fails = reached("Allow", json!({"StringEquals": {"aws:ResourceTag/x": "y"}}));
    assert!(matches!(fails, Ok(Decision::Denied(_))), "{fails:?}");
    let holds = reached("Allow", json!({"StringEquals": {"aws:ResourceTag/selfheal:enabled": "true"}}));
    assert!(matches!(holds, Ok(Decision::Allowed { conditioned: true, .. })), "{holds:?}");
    let not_action = json!({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]});
    assert!(statements_of(&not_action, "t").unwrap_err().contains("NotAction"));

    // An explicit Deny wins over any Allow; no Allow is a denial; the resource must match too.
    let policy = statements_of(
        &json!({"Statement": [
            {"Sid": "All", "Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
            {"Sid": "Fence", "Effect": "Deny", "Action": "ec2:TerminateInstances", "Resource": "*",
             "Condition": {"StringNotEquals": {"aws:ResourceTag/selfheal:enabled": "true"}}},
            {"Sid": "Zone", "Effect": "Allow", "Action": "route53:Change*", "Resource": "arn:aws:route53:::hostedzone/Z1"}
        ]}),
        "t",
    )
    .unwrap();
    let req = |action: &str, resource: &str, c: Context| Request {
        action: action.into(),
        resource: resource.into(),
        context: c,
    };
    let i = "arn:aws:ec2:us-east-1:1:instance/i-1";
    assert!(
        matches!(decide(&policy, &req("ec2:TerminateInstances", i, Context::new()), None), Ok(Decision::Denied(w)) if w.contains("Fence"))
    );
    assert!(matches!(
        decide(&policy, &req("ec2:TerminateInstances", i, c.clone()), None),
        Ok(Decision::Allowed { .. })
    ));
    assert!(matches!(
        decide(&policy, &req("EC2:stopinstances", i, Context::new()), None),
        Ok(Decision::Allowed { .. })
    ));
    let z2 = "arn:aws:route53:::hostedzone/Z2";
    assert!(
        matches!(decide(&policy, &req("route53:ChangeResourceRecordSets", z2, Context::new()), None), Ok(Decision::Denied(w)) if w.contains("Zone: resource"))
    );
    assert!(matches!(
        decide(&policy, &req("rds:RebootDBInstance", "*", Context::new()), None),
        Ok(Decision::Denied(_))
    ));

    // Request parameters as the SDK serializes them.
    let form = Form::parse(
        "Action=RunInstances&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=selfheal%3Aenabled\
         &TagSpecification.1.Tag.1.Value=true&TagSpecification.1.Tag.2.Key=Name&TagSpecification.1.Tag.2.Value=web+1\
         &InstanceId.1=i-1&InstanceId.2=i-2&Tags.Tag.1.Key=a&Tags.Tag.1.Value=b%2Fc",
    );
    assert_eq!(
        form.tag_specifications(),
        vec![(
            "instance".to_string(),
            vec![("selfheal:enabled".into(), "true".into()), ("Name".into(), "web 1".into())]
        )]
    );
    assert_eq!(form.list("InstanceId"), ["i-1", "i-2"]);
    assert_eq!(form.tags("Tags"), vec![("a".to_string(), "b/c".to_string())]);
    assert!(form.tags("TagSpecification").is_empty(), "a deeper structure's tags are not its own");
    assert_eq!(percent_decode("%E2%9C%93%zz%4"), "✓%zz%4");
    assert!(reads_anywhere("rds:DescribeBlueGreenDeployments") && reads_anywhere("ec2:DescribeVolumes"));
    assert!(!reads_anywhere("ec2:DescribeInstanceAttribute") && !reads_anywhere("route53:GetHealthCheck"));
    assert!(!reads_anywhere("rds:DeleteDBSnapshot") && !reads_anywhere("backup:GetBackupPlan"));
    assert!(is_ec2_id("snap-0abc") && is_ec2_id("eipalloc-12") && !is_ec2_id("prod-db") && !is_ec2_id("i-"));
}

/// A recorded call, as the call log would keep it.
pub(super) fn call(operation: &str, body: &str, observed: Json) -> CallRecord {
    CallRecord {
        operation: operation.into(),
        method: "POST".into(),
        uri: "http://127.0.0.1:5000/".into(),
        body: body.into(),
        access_key_id: Some("testing".into()),
        region: Some(STACK_REGION.into()),
        copy_source: None,
        observed: Some(observed),
        status: Some(200),
        response: None,
    }
}

fn deployment(function: &str) -> Deployment {
    Deployment {
        function: function.into(),
        hub_account: DEFAULT_HUB.into(),
        opt_in_value: "true".into(),
        ledger_table: "ledger".into(),
        topic_arn: None,
        member_accounts: vec![],
        member_org_units: vec![],
        hub_external_id: String::new(),
        member_external_id: String::new(),
    }
}

fn denials(d: &Deployment, records: &[CallRecord]) -> Vec<String> {
    evaluate(d, records).unwrap_or_else(|e| panic!("{e}")).denials
}

#[test]
fn the_evaluation_catches_the_two_historical_bugs_and_a_wrong_trust() {
    // 1. Deletes conditioned on a tag the suite never wrote: a snapshot without
    //    selfheal:created-by cannot be expired, one with it can.
    let backup = deployment("backup-enforcer");
    let delete = |tags: Json| {
        call("ec2:DeleteSnapshot", "Action=DeleteSnapshot&SnapshotId=snap-0123", json!({"ec2": {"snap-0123": tags}}))
    };
    let d = denials(&backup, &[delete(json!({"selfheal:policy": "gold", "selfheal:source": "vol-1"}))]);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].contains("ec2:DeleteSnapshot") && d[0].contains("ExpireSuiteSnapshots"), "{d:#?}");
    assert!(d[0].contains("aws:ResourceTag/selfheal:created-by"), "names the condition that failed: {d:#?}");
    assert!(denials(&backup, &[delete(json!({"selfheal:created-by": "backup-enforcer"}))]).is_empty());
    let rds_delete = call(
        "rds:DeleteDBSnapshot",
        "Action=DeleteDBSnapshot&DBSnapshotIdentifier=orders-1",
        json!({"rds": {"snapshot/orders-1": {"arn": "arn:aws:rds:us-east-1:123456789012:snapshot:orders-1",
            "tags": {"selfheal:policy": "gold"}}}}),
    );
    assert_eq!(denials(&backup, &[rds_delete]).len(), 1);
    // The same bug one step earlier: a snapshot taken without the tag is one the suite can never
    // delete; taking it is allowed, the tags it carries are what the delete is judged on.
    let take = call(
        "ec2:CreateSnapshot",
        "Action=CreateSnapshot&VolumeId=vol-1&TagSpecification.1.ResourceType=snapshot\
         &TagSpecification.1.Tag.1.Key=selfheal%3Apolicy&TagSpecification.1.Tag.1.Value=gold",
        json!({"ec2": {"vol-1": {"selfheal:enabled": "true"}}}),
    );
    assert!(denials(&backup, &[take]).is_empty());

    // 2. Opt-in never checked: an instance without the opt-in tag cannot be rebooted or
    //    terminated, a group without it cannot be touched, a replacement launched without it is refused.
    let healer = deployment("instance-healer");
    let reboot = |tags: Json| {
        call("ec2:RebootInstances", "Action=RebootInstances&InstanceId.1=i-0abc", json!({"ec2": {"i-0abc": tags}}))
    };
    let d = denials(&healer, &[reboot(json!({"Name": "web"}))]);
    assert!(d.len() == 1 && d[0].contains("OptedInInstances"), "{d:#?}");
    assert!(denials(&healer, &[reboot(json!({"selfheal:enabled": "true"}))]).is_empty());
    let d = denials(&healer, &[reboot(json!({"selfheal:enabled": "false"}))]);
    assert_eq!(d.len(), 1, "the value matters too: {d:#?}");
    let group = |tags: Json| {
        call(
            "autoscaling:TerminateInstanceInAutoScalingGroup",
            "Action=TerminateInstanceInAutoScalingGroup&InstanceId=i-0abc&ShouldDecrementDesiredCapacity=false",
            json!({"groups": {"i-0abc": {"arn": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:u:autoScalingGroupName/web",
                "tags": tags}}}),
        )
    };
    assert_eq!(denials(&healer, &[group(json!({}))]).len(), 1);
    assert!(denials(&healer, &[group(json!({"selfheal:enabled": "true"}))]).is_empty());
    let launch = |tags: &str| {
        call(
            "ec2:RunInstances",
            &format!("Action=RunInstances&ImageId=ami-12&SubnetId=subnet-1&MinCount=1&MaxCount=1{tags}"),
            json!({}),
        )
    };
    let d = denials(&healer, &[launch("")]);
    assert!(d.iter().any(|x| x.contains("instance/*") && x.contains("LaunchReplacementTagged")), "{d:#?}");
    let spec = |rt: &str, n: usize| {
        format!("&TagSpecification.{n}.ResourceType={rt}&TagSpecification.{n}.Tag.1.Key=selfheal%3Aenabled&TagSpecification.{n}.Tag.1.Value=true")
    };
    let all = format!("{}{}{}", spec("instance", 1), spec("volume", 2), spec("network-interface", 3));
    assert!(denials(&healer, &[launch(&all)]).is_empty(), "{:#?}", denials(&healer, &[launch(&all)]));

    // 3. The trust: the member role requires the external id when one is configured, and trusts
    //    only its own function's hub role.
    let mut fleet = deployment("instance-healer");
    fleet.member_accounts = vec!["111111111111".into()];
    fleet.hub_external_id = "ext-1".into();
    fleet.member_external_id = "ext-1".into();
    let assume = |role: &str, external: &str| {
        call(
            "sts:AssumeRole",
            &format!("Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2F{role}&RoleSessionName=s{external}"),
            json!({"orgPath": null}),
        )
    };
    assert!(denials(&fleet, &[assume("selfheal-instance-healer", "&ExternalId=ext-1")]).is_empty());
    let d = denials(&fleet, &[assume("selfheal-instance-healer", "")]);
    assert!(d.len() == 1 && d[0].contains("trust policy") && d[0].contains("sts:ExternalId"), "{d:#?}");
    let d = denials(&fleet, &[assume("selfheal-instance-healer", "&ExternalId=ext-2")]);
    assert_eq!(d.len(), 1, "{d:#?}");
    let d = denials(&fleet, &[assume("selfheal-db-failover", "&ExternalId=ext-1")]);
    assert!(d.iter().any(|x| x.contains("AssumeMemberRole")), "not its own role: {d:#?}");
    assert!(d.iter().any(|x| x.contains("aws:PrincipalArn")), "the db role trusts the db function only: {d:#?}");
    let mut outside = fleet.clone();
    outside.member_accounts = vec!["222222222222".into()];
    assert!(!denials(&outside, &[assume("selfheal-instance-healer", "&ExternalId=ext-1")]).is_empty());

    // 4. Calls with the credentials an AssumeRole returned are the member role's.
    let mut assumed = assume("selfheal-instance-healer", "&ExternalId=ext-1");
    assumed.response = Some(
        "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAMEMBER</AccessKeyId></Credentials>\
         <AssumedRoleUser><Arn>arn:aws:sts::111111111111:assumed-role/selfheal-instance-healer/s</Arn>\
         </AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"
            .into(),
    );
    let mut in_member = reboot(json!({}));
    in_member.access_key_id = Some("ASIAMEMBER".into());
    let e = evaluate(&fleet, &[assumed.clone(), in_member.clone()]).unwrap();
    assert_eq!((e.member_calls, e.trusts), (1, 1));
    assert!(e.denials.len() == 1 && e.denials[0].contains("selfheal-instance-healer (member 111111111111)"), "{e:#?}");
    in_member.observed = Some(json!({"ec2": {"i-0abc": {"selfheal:enabled": "true"}}}));
    let e = evaluate(&fleet, &[assumed, in_member]).unwrap();
    assert!(
        e.denials.is_empty() && e.by_statement.contains_key("member/OptedInInstances ec2:RebootInstances"),
        "{e:#?}"
    );

    // 5. What it cannot model is an error, not a pass.
    let unknown = call("ec2:DetachVolume", "Action=DetachVolume&VolumeId=vol-1", json!({}));
    assert!(evaluate(&healer, &[unknown]).unwrap_err().contains("does not model"));
}

/// An ARC zonal shift call as the SDK sends it (restJson: the path names the shift or resource).
fn arc_call(op: &str, path: &str, body: Json, observed: Json) -> CallRecord {
    let mut r = call(op, &body.to_string(), observed);
    r.uri = format!("http://127.0.0.1:9000{path}");
    r
}

#[test]
fn the_zone_evacuator_s_role_shifts_and_changes_only_what_is_opted_in_in_its_own_account() {
    let hub = deployment("zone-evacuator");
    let lb = |account: &str, name: &str| {
        format!("arn:aws:elasticloadbalancing:us-east-1:{account}:loadbalancer/app/{name}/1")
    };
    let group =
        |account: &str| format!("arn:aws:autoscaling:us-east-1:{account}:autoScalingGroup:u:autoScalingGroupName/web");
    let (web, other) = (lb(DEFAULT_HUB, "web"), lb(DEFAULT_HUB, "other"));
    let tags = json!({"elb": {&web: {"selfheal:enabled": "true"}, &other: {"selfheal:enabled": "false"}}});
    let start = |arn: &str| {
        let body = json!({"resourceIdentifier": arn, "awayFrom": "use1-az6", "expiresIn": "60m", "comment": "c"});
        arc_call("arc-zonal-shift:StartZonalShift", "/zonalshifts", body, tags.clone())
    };
    let verdict = |records: &[CallRecord]| evaluate(&hub, records).unwrap_or_else(|e| panic!("{e}"));
    let allowed_by = |r: CallRecord, sid: &str| {
        let e = verdict(&[r]);
        assert!(e.denials.is_empty(), "{:#?}", e.denials);
        assert!(e.by_statement.keys().any(|k| k.starts_with(&format!("hub/{sid} "))), "{sid}: {}", e.summary());
    };
    // Shifts: an opted-in load balancer by its tag, a group of this account and region by its identifier.
    allowed_by(start(&web), "ShiftOptedInLoadBalancers");
    allowed_by(start(&group(DEFAULT_HUB)), "ShiftAutoScalingGroups");
    let d = denials(&hub, &[start(&other)]);
    assert!(d.len() == 1 && d[0].contains("aws:ResourceTag/selfheal:enabled"), "not opted in: {d:#?}");
    assert!(d[0].contains("ShiftAutoScalingGroups"), "nor is it a group: {d:#?}");
    assert_eq!(denials(&hub, &[start(&lb("222222222222", "web"))]).len(), 1, "another account's");
    assert_eq!(denials(&hub, &[start(&group("222222222222"))]).len(), 1, "another account's group");
    assert_eq!(
        denials(&hub, &[start("arn:aws:eks:us-east-1:123456789012:cluster/c")]).len(),
        1,
        "not a kind it shifts"
    );
    // Update and Cancel: on the resource ARC holds for the shift.
    for (op, arn, sid) in [
        ("arc-zonal-shift:UpdateZonalShift", web.clone(), "ShiftOptedInLoadBalancers"),
        ("arc-zonal-shift:CancelZonalShift", group(DEFAULT_HUB), "ShiftAutoScalingGroups"),
    ] {
        let mut seen = tags.clone();
        seen["arcShift"] = json!({"id": "s-1", "resource": arn});
        allowed_by(arc_call(op, "/zonalshifts/s-1", json!({"expiresIn": "60m"}), seen), sid);
    }
    let mut seen = tags.clone();
    seen["arcShift"] = json!({"id": "s-2", "resource": other});
    assert_eq!(
        denials(&hub, &[arc_call("arc-zonal-shift:CancelZonalShift", "/zonalshifts/s-2", json!({}), seen)]).len(),
        1
    );
    // Reads: a managed resource of this account by its identifier; the listings anywhere.
    let get = |arn: &str| {
        let encoded: String = arn
            .chars()
            .map(|c| if c == ':' || c == '/' { format!("%{:02X}", c as u8) } else { c.to_string() })
            .collect();
        arc_call(
            "arc-zonal-shift:GetManagedResource",
            &format!("/managedresources/{encoded}"),
            json!(null),
            tags.clone(),
        )
    };
    allowed_by(get(&other), "ReadManagedResources");
    assert_eq!(denials(&hub, &[get("arn:aws:eks:us-east-1:123456789012:cluster/c")]).len(), 1);
    for op in [
        "arc-zonal-shift:ListManagedResources",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "ec2:DescribeAvailabilityZones",
    ] {
        allowed_by(call(op, "", json!({})), "ReadOnly");
    }
    allowed_by(call("cloudwatch:DescribeAlarms", "AlarmNamePrefix", json!({})), "ReadAlarms");
    // The readiness fix, on an opted-in load balancer only.
    let modify = |arn: &str| {
        call("elasticloadbalancing:ModifyLoadBalancerAttributes", &format!("LoadBalancerArn={arn}"), tags.clone())
    };
    allowed_by(modify(&web), "OptedInLoadBalancers");
    assert_eq!(denials(&hub, &[modify(&other)]).len(), 1);
    // Groups: desired capacity and subnets of an opted-in group; never its size limits or launch template.
    let update = |params: &str, enabled: &str| {
        let seen = json!({"group": {"web": {"arn": group(DEFAULT_HUB), "tags": {"selfheal:enabled": enabled}}}});
        call("autoscaling:UpdateAutoScalingGroup", &format!("AutoScalingGroupName=web{params}"), seen)
    };
    allowed_by(update("&DesiredCapacity=5", "true"), "OptedInGroups");
    allowed_by(update("&VPCZoneIdentifier=subnet-1%2Csubnet-2", "true"), "OptedInGroups");
    allowed_by(update("&AvailabilityZoneImpairmentPolicy.ZonalShiftEnabled=true", "true"), "OptedInGroups");
    assert_eq!(denials(&hub, &[update("&DesiredCapacity=5", "false")]).len(), 1, "not opted in");
    for (params, key) in [
        ("&MinSize=0", "autoscaling:MinSize"),
        ("&MaxSize=50", "autoscaling:MaxSize"),
        ("&LaunchConfigurationName=lc", "autoscaling:LaunchConfigurationName"),
        (
            "&LaunchTemplate.LaunchTemplateId=lt-1&LaunchTemplate.Version=%24Latest",
            "autoscaling:LaunchTemplateVersionSpecified",
        ),
        (
            "&MixedInstancesPolicy.LaunchTemplate.Overrides.member.1.InstanceType=p5.48xlarge",
            "autoscaling:InstanceTypes",
        ),
    ] {
        let d = denials(&hub, &[update(&format!("&DesiredCapacity=5{params}"), "true")]);
        assert!(d.len() == 1 && d[0].contains(key), "{params}: {d:#?}");
    }

    // In a member account, through its member role: that account's resources, not the hub's.
    let mut fleet = deployment("zone-evacuator");
    fleet.member_accounts = vec!["111111111111".into()];
    let mut assumed = call(
        "sts:AssumeRole",
        "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Fselfheal-zone-evacuator&RoleSessionName=s",
        json!({"orgPath": null}),
    );
    assumed.response = Some(
        "<AssumeRoleResult><Credentials><AccessKeyId>ASIAZONE</AccessKeyId></Credentials><AssumedRoleUser>\
         <Arn>arn:aws:sts::111111111111:assumed-role/selfheal-zone-evacuator/s</Arn></AssumedRoleUser></AssumeRoleResult>"
            .into(),
    );
    let member_lb = lb("111111111111", "web");
    let in_member = |arn: &str, enabled: &str| {
        let body = json!({"resourceIdentifier": arn, "awayFrom": "use1-az1", "expiresIn": "60m", "comment": "c"});
        let mut r = arc_call(
            "arc-zonal-shift:StartZonalShift",
            "/zonalshifts",
            body,
            json!({"elb": {arn: {"selfheal:enabled": enabled}}}),
        );
        r.access_key_id = Some("ASIAZONE".into());
        r
    };
    let e =
        evaluate(&fleet, &[assumed.clone(), in_member(&member_lb, "true"), in_member(&group("111111111111"), "true")])
            .unwrap();
    assert!(e.denials.is_empty(), "{:#?}", e.denials);
    assert_eq!((e.member_calls, e.trusts), (2, 1));
    assert!(
        e.by_statement.contains_key("member/ShiftOptedInLoadBalancers arc-zonal-shift:StartZonalShift"),
        "{}",
        e.summary()
    );
    assert!(
        e.by_statement.contains_key("member/ShiftAutoScalingGroups arc-zonal-shift:StartZonalShift"),
        "{}",
        e.summary()
    );
    let e = evaluate(&fleet, &[assumed.clone(), in_member(&member_lb, "false"), in_member(&web, "true")]).unwrap();
    assert_eq!(e.denials.len(), 2, "not opted in, and the hub's own load balancer: {:#?}", e.denials);
}
