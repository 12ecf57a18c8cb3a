//! The hub-and-spoke checks catch what they claim to: each is run on a mutation of
//! `infra/member.yaml` or `infra/template.yaml` (a member role losing or gaining a statement, a
//! weakened trust, a forwarding rule that differs, a grant leaving the organization, the hub's side
//! widened or narrowed) and must name the fault.

use serde_norway::Value;

use super::assume::assume_problems;
use super::common::{mutated, parse, template_text};
use super::member::{forwarding_problems, member_policy_drift, trust_problems, unfenced_cross_account_grants};

#[test]
fn the_hub_and_spoke_checks_catch_what_they_claim_to() {
    let (hub_text, member_text) = (template_text("infra/template.yaml"), template_text("infra/member.yaml"));
    let (hub, member) = (parse(&hub_text), parse(&member_text));
    let drift = |hub: &Value, text: &str| member_policy_drift(hub, &parse(text));
    let mentions = |problems: &[String], what: &str| problems.iter().any(|p| p.contains(what));

    // A member role losing an action, a tag condition, or its region widening.
    let d = drift(&hub, &mutated(&member_text, "                  - ec2:RebootInstances\n", ""));
    assert!(mentions(&d, "selfheal-instance-healer lacks") && mentions(&d, "OptedInInstances"), "{d:#?}");
    let d = drift(
        &hub,
        &mutated(
            &member_text,
            r#"{ "aws:ResourceTag/selfheal:enabled": !Ref OptInTagValue }"#,
            r#"{ "aws:ResourceTag/selfheal:enabled": "true" }"#,
        ),
    );
    assert!(mentions(&d, "lacks") && mentions(&d, "does not"), "{d:#?}");
    let d = drift(
        &hub,
        &mutated(
            &member_text,
            ":ec2:*:${AWS::AccountId}:instance/*",
            ":ec2:${AWS::Region}:${AWS::AccountId}:instance/*",
        ),
    );
    assert!(mentions(&d, "must not be scoped to the region"), "{d:#?}");
    // A member role gaining a statement, or a hub-only one.
    let extra = "              - { Sid: More, Effect: Allow, Action: route53:DeleteHostedZone, Resource: \"*\" }\n";
    let d = drift(
        &hub,
        &mutated(
            &member_text,
            "              - Sid: HealthChecks\n",
            &format!("{extra}              - Sid: HealthChecks\n"),
        ),
    );
    assert!(mentions(&d, "selfheal-dns-failover has a statement") && mentions(&d, "DeleteHostedZone"), "{d:#?}");
    let ledger = "              - { Sid: Ledger, Effect: Allow, Action: dynamodb:GetItem, Resource: \"*\" }\n";
    let d = drift(
        &hub,
        &mutated(
            &member_text,
            "              - Sid: HealthChecks\n",
            &format!("{ledger}              - Sid: HealthChecks\n"),
        ),
    );
    assert!(mentions(&d, "grants hub-only actions"), "{d:#?}");
    // The hub role gaining an action the member role lacks.
    let grown = parse(&mutated(
        &hub_text,
        "                  - rds:FailoverDBCluster\n",
        "                  - rds:FailoverDBCluster\n                  - rds:DeleteDBInstance\n",
    ));
    let d = member_policy_drift(&grown, &member);
    assert!(mentions(&d, "selfheal-db-failover lacks") && mentions(&d, "rds:DeleteDBInstance"), "{d:#?}");
    // A statement mixing hub-only and member actions cannot be mirrored.
    let mixed = parse(&mutated(
        &hub_text,
        "                Action: [route53:ChangeResourceRecordSets, route53:ListResourceRecordSets]\n",
        "                Action: [route53:ChangeResourceRecordSets, route53:ListResourceRecordSets, sns:Publish]\n",
    ));
    assert!(mentions(&member_policy_drift(&mixed, &member), "mixes hub-only"));
    // A referenced parameter defined differently.
    let d = drift(&hub, &mutated(&member_text, "    Default: \"*\"\n", "    Default: Z0000000000000\n"));
    assert!(mentions(&d, "parameter HostedZoneId: Default"), "{d:#?}");

    // Trust: each of the three conditions, and the role it names.
    let t = parse(&mutated(
        &member_text,
        r#""aws:PrincipalOrgID": !Ref OrganizationId, "sts:ExternalId": !Ref ExternalId"#,
        r#""aws:PrincipalOrgID": !Ref OrganizationId"#,
    ));
    assert!(mentions(&trust_problems(&t, "instance-healer"), "sts:ExternalId must be StringEquals"));
    let t = parse(&mutated(
        &member_text,
        r#"- { "aws:PrincipalOrgID": !Ref OrganizationId }"#,
        r#"- { "aws:SourceAccount": !Ref HubAccountId }"#,
    ));
    assert!(mentions(&trust_problems(&t, "instance-healer"), "aws:PrincipalOrgID must be"));
    let t = parse(&mutated(&member_text, "role/${HubStackName}-db-failover", "role/${HubStackName}-*"));
    assert!(mentions(&trust_problems(&t, "db-failover"), "aws:PrincipalArn must be"));
    assert!(trust_problems(&t, "instance-healer").is_empty());
    let t = parse(&mutated(
        &member_text,
        r#"Principal: { AWS: !Sub "arn:${AWS::Partition}:iam::${HubAccountId}:root" }"#,
        r#"Principal: { AWS: "*" }"#,
    ));
    assert!(mentions(&trust_problems(&t, "instance-healer"), "Principal must be the hub account"));

    // Forwarding: a pattern that differs, a hub-bus rule without its permission.
    let f =
        forwarding_problems(&hub, &parse(&mutated(&member_text, "state: [stopped, terminated]", "state: [stopped]")));
    assert!(mentions(&f, "member: no rule forwards") && mentions(&f, "member: a rule forwards"), "{f:#?}");
    let f = forwarding_problems(
        &parse(&mutated(
            &hub_text,
            "      SourceArn: !GetAtt HubRdsEvents.Arn\n",
            "      SourceArn: !GetAtt HubStatusCheckAlarm.Arn\n",
        )),
        &member,
    );
    assert!(mentions(&f, "no AWS::Lambda::Permission lets HubRdsEvents invoke DbFailoverFunction"), "{f:#?}");
    let f = forwarding_problems(
        &parse(&mutated(&hub_text, "              state: [stopped, terminated]\n", "              state: [stopped]\n")),
        &member,
    );
    assert!(mentions(&f, "hub bus: no rule routes") && mentions(&f, "hub bus: a rule routes"), "{f:#?}");

    // A grant into any account without the organization fence: the account-list statement (also
    // caught by evaluation: a listed account of another organization becomes assumable), and the
    // OU statement (another organization's OU of the same id becomes assumable).
    let unfenced = mutated(&hub_text, "                      \"aws:ResourceOrgID\": !Ref OrganizationId\n", "");
    assert!(mentions(&unfenced_cross_account_grants(&parse(&unfenced)), "InstanceHealerRole"));
    let p = assume_problems(&parse(&unfenced));
    assert!(mentions(&p, "instance-healer") && mentions(&p, "888888888888"), "{p:#?}");
    let ou_fence = "                    StringEquals:\n                      \"aws:ResourceOrgID\": !Ref OrganizationId\n                    ForAnyValue:StringLike:";
    let unfenced = parse(&mutated(&hub_text, ou_fence, "                    ForAnyValue:StringLike:"));
    assert!(mentions(&unfenced_cross_account_grants(&unfenced), "InstanceHealerRole"));
    let p = assume_problems(&unfenced);
    assert!(mentions(&p, "role/selfheal-instance-healer (a listed account of another organization"), "{p:#?}");

    // The hub's side, evaluated: the unmutated template passes, so each failure below is the mutation's.
    assert!(assume_problems(&hub).is_empty());
    let assume = |from: &str, to: &str| assume_problems(&parse(&mutated(&hub_text, from, to)));
    // OU patterns not anchored at path separators admit an OU whose id extends a listed one.
    let p =
        assume(r#"!Sub ["*/${Units}/*", { Units: !Join ["/*,*/","#, r#"!Sub ["*${Units}*", { Units: !Join ["*,*","#);
    assert!(mentions(&p, "666666666666") && mentions(&p, "whose id extends a listed one"), "{p:#?}");
    // Account list and OU paths in one statement: IAM ANDs the keys, so each shuts the other's accounts out.
    let p = assume(
        ou_fence,
        "                    StringEquals:\n                      \"aws:ResourceOrgID\": !Ref OrganizationId\n                      \"aws:ResourceAccount\": !Split [\",\", !Ref MemberAccounts]\n                    ForAnyValue:StringLike:",
    );
    assert!(mentions(&p, "instance-healer") && mentions(&p, "an account in a child OU of a listed OU"), "{p:#?}");
    // The OU statement present only with MemberAccounts: accounts under the OUs cannot be reached.
    let p = assume(
        "                - ActsInMemberOrgUnits\n                - Sid: AssumeMemberRoleUnderOrgUnits",
        "                - ActsInMemberAccounts\n                - Sid: AssumeMemberRoleUnderOrgUnits",
    );
    assert!(mentions(&p, "MemberAccounts=\"\" MemberOrgUnits=\"r-ab12\"") && mentions(&p, "333333333333"), "{p:#?}");
    // Acting under OUs without an organization: the statements exist with nothing to fence them to.
    let p = assume(
        "  ActsInMemberOrgUnits: !And [!Condition HasOrganization, !Condition HasMemberOrgUnits]\n",
        "  ActsInMemberOrgUnits: !Condition HasMemberOrgUnits\n",
    );
    assert!(mentions(&p, "although no member account is served"), "{p:#?}");
    assert!(mentions(&p, "organizations:ListAccountsForParent granted: true"), "{p:#?}");
    // Listing the organization without MemberOrgUnits, or more of AWS Organizations than the two calls.
    let p = assume(
        "                - ActsInMemberOrgUnits\n                - Sid: ListOrgUnitAccounts",
        "                - HasOrganization\n                - Sid: ListOrgUnitAccounts",
    );
    assert!(mentions(&p, "ListOrganizationalUnitsForParent granted: true"), "{p:#?}");
    let p = assume(
        "Action: [organizations:ListAccountsForParent, organizations:ListOrganizationalUnitsForParent]",
        "Action: [\"organizations:List*\"]",
    );
    assert!(mentions(&p, "grants organizations:List*"), "{p:#?}");
    // Another function's member role, or the OUs left out of what the code reads.
    let p = assume("iam::*:role/selfheal-db-failover\n", "iam::*:role/selfheal-*\n");
    assert!(mentions(&p, "db-failover") && mentions(&p, "role/selfheal-instance-healer, not its own"), "{p:#?}");
    let p = assume(
        "SELFHEAL_ACCOUNTS: !Join [\",\", [!Ref MemberAccounts, !Ref MemberOrgUnits]]",
        "SELFHEAL_ACCOUNTS: !Ref MemberAccounts",
    );
    assert!(mentions(&p, "SELFHEAL_ACCOUNTS must carry [\"ou-ab12-11111111\", \"ou-ab12-22222222\"]"), "{p:#?}");
}
