//! Provisions the reference architecture (`../shared/seed-ha-architecture.txt`) for a local game day:
//! a VPC with one subnet in each of three AZs, a launch template and an Auto Scaling group spread over
//! them behind an Application Load Balancer (a target group with an HTTP health check, the group's
//! members its targets), an RDS Multi-AZ primary with two read replicas, a Route 53 zone with an application failover
//! record pair (each side with a health check) and a database CNAME, a versioned S3 bucket with the
//! static content, backup-tagged EBS volumes, the suite's SNS topic and the ledger table. Every
//! resource is opted in and drill-tagged.
//!
//! The load balancer and every group are ready for an AZ evacuation: the ALB has
//! `zonal_shift.config.enabled`, each group an `AvailabilityZoneImpairmentPolicy` with zonal shift on,
//! both carry the opt-in tag, and [`register_with_arc`] tells the ARC stand-in about them with the AZ
//! IDs the emulator reports (moto: us-east-1a is `use1-az6`), as ARC knows the resources of an account
//! by itself. The suite acts on the bucket nowhere; it is there so the game day runs against the whole
//! reference architecture.
//!
//! [`provision_accounts`] spreads it over several accounts of one organization: the hub keeps the
//! ledger, the topic and the DNS (zone, records, health checks); the web tier (VPC, subnets, launch
//! template, Auto Scaling group, load balancer, bucket) goes to the first member account, the data tier
//! to the second (the first when there is only one), and the backup volumes round-robin over every
//! account. A member account is reached through `sts:AssumeRole` on [`PROVISION_ROLE`] there.
//!
//! On request ([`ProvisionOptions::fleet_databases`], `drill-cli provision --fleet`) it also creates the
//! larger [`Fleet`] the `az-outage` scenario takes one AZ out of: three more Auto Scaling groups of
//! different shapes over the three AZs (in the web tier's account), and many databases, each a writer in
//! one AZ (round-robin) with a read replica in each of the two others (in the data tier's account). The
//! other scenarios and the default game day do not need it and stay small.

use selfheal::clients::Aws;
use selfheal::drill::architecture::{Architecture, Fleet, FleetDatabase, FleetGroup, AZS, DRILL_TAG, FLEET_GROUPS};
use selfheal::error::{Error, Result};

/// The role assumed in a member account to provision there.
pub const PROVISION_ROLE: &str = "selfheal-gameday";

/// The most accounts a game day spreads over (the hub and members `111111111111` … `888888888888`).
pub const MAX_ACCOUNTS: usize = 9;

/// The member account ids of an `accounts`-account game day: `111111111111`, `222222222222`, ….
pub fn member_account_ids(accounts: usize) -> Vec<String> {
    (1..accounts.min(MAX_ACCOUNTS)).map(|i| i.to_string().repeat(12)).collect()
}

/// The most databases the `az-outage` fleet may have.
pub const MAX_FLEET_DATABASES: usize = 300;

/// The fleet's default number of databases: 60, writers round-robin over the three AZs, so losing one AZ
/// fails 20 writers at once.
pub const DEFAULT_FLEET_DATABASES: usize = 60;

/// What to provision besides the reference architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisionOptions {
    /// The hub and member accounts to spread over (1: all in the caller's own).
    pub accounts: usize,
    /// When set, the `az-outage` fleet with this many databases (at least 3: one writer in each AZ).
    pub fleet_databases: Option<usize>,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        ProvisionOptions { accounts: 1, fleet_databases: None }
    }
}

/// Credentials acting in `account`, through `sts:AssumeRole` on [`PROVISION_ROLE`] there.
pub async fn assume_in(aws: &Aws, account: &str) -> Result<Aws> {
    let region = aws.sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_string());
    let role_arn = format!("arn:aws:iam::{account}:role/{PROVISION_ROLE}");
    let out = aws
        .sts()
        .assume_role()
        .role_arn(&role_arn)
        .role_session_name("selfheal-gameday-provision")
        .send()
        .await
        .map_err(aws_err("sts", "AssumeRole"))?;
    let c = out.credentials().ok_or_else(|| missing(&format!("credentials for {role_arn}")))?;
    let creds = aws_sdk_sts::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "selfheal-gameday",
    );
    Ok(aws.with_credentials(creds, &region))
}

fn aws_err<E>(service: &'static str, op: &'static str) -> impl FnOnce(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| Error::aws(service, op, e)
}

fn missing(what: &str) -> Error {
    Error::Precondition(format!("the emulator returned no {what}"))
}

/// Creates the whole reference architecture with names starting with `prefix`, in one account.
pub async fn provision(aws: &Aws, prefix: &str, ledger_table: &str, opt_in: (&str, &str)) -> Result<Architecture> {
    provision_accounts(aws, prefix, ledger_table, opt_in, 1).await
}

/// Creates the whole reference architecture over `accounts` accounts (1: all in `aws`'s own; see
/// the module's documentation for the layout of more).
pub async fn provision_accounts(
    aws: &Aws,
    prefix: &str,
    ledger_table: &str,
    opt_in: (&str, &str),
    accounts: usize,
) -> Result<Architecture> {
    let options = ProvisionOptions { accounts, ..ProvisionOptions::default() };
    provision_with(aws, prefix, ledger_table, opt_in, options).await
}

/// Creates the reference architecture as `options` say: over how many accounts, and with or without
/// the `az-outage` fleet.
pub async fn provision_with(
    aws: &Aws,
    prefix: &str,
    ledger_table: &str,
    opt_in: (&str, &str),
    options: ProvisionOptions,
) -> Result<Architecture> {
    use aws_sdk_ec2::types::{RequestLaunchTemplateData, ResourceType, Tag as Ec2Tag, TagSpecification};
    let accounts = options.accounts;
    if !(1..=MAX_ACCOUNTS).contains(&accounts) {
        return Err(Error::Precondition(format!("a game day spans 1 to {MAX_ACCOUNTS} accounts, not {accounts}")));
    }
    if let Some(n) = options.fleet_databases.filter(|n| !(3..=MAX_FLEET_DATABASES).contains(n)) {
        return Err(Error::Precondition(format!(
            "the az-outage fleet has 3 to {MAX_FLEET_DATABASES} databases (one writer in each AZ at least), not {n}"
        )));
    }
    let members = member_account_ids(accounts);
    let home_account = if members.is_empty() {
        None
    } else {
        let me = aws.sts().get_caller_identity().send().await.map_err(aws_err("sts", "GetCallerIdentity"))?;
        Some(me.account().ok_or_else(|| missing("caller account"))?.to_string())
    };
    if let Some(home) = home_account.as_ref().filter(|h| members.contains(h)) {
        return Err(Error::Precondition(format!("the hub's account {home} is also a member account id")));
    }
    let web_account = members.first().cloned();
    let db_account = members.get(1).or(members.first()).cloned();
    // Each member's clients, through the provisioning role; the hub's are `aws` itself.
    let mut member_aws = std::collections::BTreeMap::new();
    for m in &members {
        member_aws.insert(m.clone(), assume_in(aws, m).await?);
    }
    let aws_of = |account: Option<&String>| account.and_then(|a| member_aws.get(a)).unwrap_or(aws).clone();
    let hub = aws;
    let web = aws_of(web_account.as_ref());
    let db = aws_of(db_account.as_ref());
    let aws = &web;
    let ec2 = aws.ec2();
    let tags = [(opt_in.0, opt_in.1), (DRILL_TAG, "true"), ("selfheal:gameday", prefix)];
    let ec2_tags = |rt: ResourceType, extra: &[(&str, &str)]| {
        let mut b = TagSpecification::builder().resource_type(rt);
        for (k, v) in tags.iter().chain(extra.iter()) {
            b = b.tags(Ec2Tag::builder().key(*k).value(*v).build());
        }
        b.build()
    };

    let vpc = ec2.create_vpc().cidr_block("10.20.0.0/16").send().await.map_err(aws_err("ec2", "CreateVpc"))?;
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).ok_or_else(|| missing("VPC id"))?.to_string();
    let mut subnet_ids = Vec::new();
    for (i, az) in AZS.iter().enumerate() {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.20.{i}.0/24"))
            .availability_zone(*az)
            .send()
            .await
            .map_err(aws_err("ec2", "CreateSubnet"))?;
        subnet_ids.push(s.subnet().and_then(|s| s.subnet_id()).ok_or_else(|| missing("subnet id"))?.to_string());
    }
    let sg = ec2
        .create_security_group()
        .group_name(format!("{prefix}-web"))
        .description("selfheal game day web tier")
        .vpc_id(&vpc_id)
        .send()
        .await
        .map_err(aws_err("ec2", "CreateSecurityGroup"))?;
    let security_group_id = sg.group_id().ok_or_else(|| missing("security group id"))?.to_string();
    let images = ec2.describe_images().owners("amazon").send().await.map_err(aws_err("ec2", "DescribeImages"))?;
    let image_id = images.images().iter().find_map(|i| i.image_id()).ok_or_else(|| missing("AMI"))?.to_string();
    let lt = ec2
        .create_launch_template()
        .launch_template_name(format!("{prefix}-web"))
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(&image_id)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .security_group_ids(&security_group_id)
                .tag_specifications(
                    aws_sdk_ec2::types::LaunchTemplateTagSpecificationRequest::builder()
                        .resource_type(ResourceType::Instance)
                        .set_tags(Some(tags.iter().map(|(k, v)| Ec2Tag::builder().key(*k).value(*v).build()).collect()))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(aws_err("ec2", "CreateLaunchTemplate"))?;
    let launch_template_id = lt
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .ok_or_else(|| missing("launch template id"))?
        .to_string();

    // The web tier: an Auto Scaling group over three AZs, two instances in each.
    let asg_name = format!("{prefix}-web");
    let per_az = 2;
    let asg_desired = per_az * AZS.len() as i32;
    provision_group(aws, &asg_name, &launch_template_id, &subnet_ids, &[per_az; 3], &tags).await?;

    let (load_balancer_arn, target_group_arn) =
        provision_load_balancer(aws, prefix, &vpc_id, &subnet_ids, &security_group_id, &asg_name, &tags).await?;

    // The data tier: a Multi-AZ primary and two read replicas in other AZs.
    let rds = db.rds();
    let rds_tags =
        || tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build()).collect::<Vec<_>>();
    let db_primary = format!("{prefix}-orders");
    rds.create_db_instance()
        .db_instance_identifier(&db_primary)
        .engine("mysql")
        .db_instance_class("db.t3.medium")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("gameday-password-1")
        .multi_az(true)
        .backup_retention_period(7)
        .set_tags(Some(rds_tags()))
        .send()
        .await
        .map_err(aws_err("rds", "CreateDBInstance"))?;
    let mut db_replicas = Vec::new();
    for (i, az) in AZS.iter().skip(1).enumerate() {
        let id = format!("{db_primary}-replica-{}", i + 1);
        rds.create_db_instance_read_replica()
            .db_instance_identifier(&id)
            .source_db_instance_identifier(&db_primary)
            .availability_zone(*az)
            .set_tags(Some(rds_tags()))
            .send()
            .await
            .map_err(aws_err("rds", "CreateDBInstanceReadReplica"))?;
        db_replicas.push(id);
    }
    let region_db_primary = format!("{prefix}-accounts");
    rds.create_db_instance()
        .db_instance_identifier(&region_db_primary)
        .engine("postgres")
        .db_instance_class("db.t3.medium")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("gameday-password-1")
        .multi_az(true)
        .set_tags(Some(rds_tags()))
        .send()
        .await
        .map_err(aws_err("rds", "CreateDBInstance"))?;
    let region_db_replica = format!("{region_db_primary}-standby");
    rds.create_db_instance_read_replica()
        .db_instance_identifier(&region_db_replica)
        .source_db_instance_identifier(&region_db_primary)
        .availability_zone(AZS[2])
        .set_tags(Some(rds_tags()))
        .send()
        .await
        .map_err(aws_err("rds", "CreateDBInstanceReadReplica"))?;
    let primary_endpoint = rds
        .describe_db_instances()
        .db_instance_identifier(&db_primary)
        .send()
        .await
        .map_err(aws_err("rds", "DescribeDBInstances"))?
        .db_instances()
        .first()
        .and_then(|d| d.endpoint())
        .and_then(|e| e.address())
        .unwrap_or("primary.db.internal")
        .to_string();

    // The front door: Route 53 failover records with health checks, and the database CNAME.
    let (zone_id, primary_health_check, secondary_health_check, primary_ip, secondary_ip) =
        provision_dns(hub, prefix, &primary_endpoint, &tags).await?;
    let zone_name = format!("{prefix}.example.com.");

    // Backup-tagged volumes with no snapshot yet: stale by definition; round-robin over the accounts
    // (at least one in each).
    let mut all_accounts: Vec<Option<String>> = vec![None];
    all_accounts.extend(members.iter().cloned().map(Some));
    let mut backup_volumes = Vec::new();
    let mut volume_accounts = Vec::new();
    for i in 0..AZS.len().max(all_accounts.len()) {
        let az = AZS[i % AZS.len()];
        let account = &all_accounts[i % all_accounts.len()];
        let v = aws_of(account.as_ref())
            .ec2()
            .create_volume()
            .availability_zone(az)
            .size(8)
            .tag_specifications(ec2_tags(
                ResourceType::Volume,
                &[("selfheal:backup", "gold"), ("Name", &format!("{prefix}-data-{i}"))],
            ))
            .send()
            .await
            .map_err(aws_err("ec2", "CreateVolume"))?;
        backup_volumes.push(v.volume_id().ok_or_else(|| missing("volume id"))?.to_string());
        if let Some(home) = &home_account {
            volume_accounts.push(account.clone().unwrap_or_else(|| home.clone()));
        }
    }

    let static_bucket = provision_static_content(aws, prefix, &tags).await?;
    provision_sessions_table(&db, prefix, &tags).await?;

    let sns = hub.sns();
    let topic =
        sns.create_topic().name(format!("{prefix}-events")).send().await.map_err(aws_err("sns", "CreateTopic"))?;
    let topic_arn = topic.topic_arn().ok_or_else(|| missing("topic ARN"))?.to_string();
    let ledger = selfheal::ledger::Ledger::new(hub.dynamodb(), ledger_table, std::time::Duration::from_secs(86_400));
    ledger.ensure_table().await?;

    let fleet = match options.fleet_databases {
        None => None,
        Some(databases) => {
            let mut groups = Vec::new();
            for (name, per_az) in FLEET_GROUPS {
                let group = FleetGroup { name: format!("{prefix}-fleet-{name}"), per_az: per_az.to_vec() };
                provision_group(aws, &group.name, &launch_template_id, &subnet_ids, &group.per_az, &tags).await?;
                groups.push(group);
            }
            let databases = provision_fleet_databases(&db, prefix, databases, &tags).await?;
            Some(Fleet { groups, databases })
        }
    };

    Ok(Architecture {
        prefix: prefix.to_string(),
        vpc_id,
        subnet_ids,
        security_group_id,
        launch_template_id,
        asg_name,
        asg_desired,
        db_primary,
        db_replicas,
        region_db_primary: Some(region_db_primary),
        region_db_replica: Some(region_db_replica),
        zone_id,
        app_record: format!("app.{zone_name}"),
        db_record: format!("db.{zone_name}"),
        zone_name,
        primary_health_check,
        secondary_health_check,
        primary_ip,
        secondary_ip,
        backup_volumes,
        topic_arn,
        ledger_table: ledger_table.to_string(),
        load_balancer_arn: Some(load_balancer_arn),
        target_group_arn: Some(target_group_arn),
        static_bucket: Some(static_bucket),
        home_account,
        web_account,
        db_account,
        volume_accounts,
        fleet,
        opt_in_tag: Some(opt_in.0.to_string()),
        opt_in_value: Some(opt_in.1.to_string()),
    })
}

/// Registers the web tier's load balancer and Auto Scaling groups with the ARC zonal shift stand-in at
/// `endpoint` (`POST /_standin/register`, the stand-in's own route outside ARC's API), each with its AZs
/// as `(name, ID)` from `ec2:DescribeAvailabilityZones` in the web tier's account, zonal autoshift off.
/// Returns the ARNs registered. Against the real ARC there is nothing to do: it knows every load
/// balancer and group of an account by itself.
pub async fn register_with_arc(aws: &Aws, arch: &Architecture, endpoint: &str) -> Result<Vec<String>> {
    let web = match arch.web_member() {
        Some(account) => assume_in(aws, account).await?,
        None => aws.clone(),
    };
    let zones =
        web.ec2().describe_availability_zones().send().await.map_err(aws_err("ec2", "DescribeAvailabilityZones"))?;
    let id_of: std::collections::BTreeMap<String, String> = zones
        .availability_zones()
        .iter()
        .filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string())))
        .collect();
    let pairs = |names: Vec<String>| -> Result<Vec<(String, String)>> {
        names
            .into_iter()
            .map(|n| {
                let id = id_of.get(&n).cloned().ok_or_else(|| missing(&format!("AZ ID for {n}")))?;
                Ok((n, id))
            })
            .collect()
    };
    // (ARN, name, its AZs as (name, ID))
    type Managed = (String, String, Vec<(String, String)>);
    let mut resources: Vec<Managed> = Vec::new();
    if let Some(arn) = &arch.load_balancer_arn {
        let lbs = web
            .elbv2()
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
            .map_err(aws_err("elasticloadbalancing", "DescribeLoadBalancers"))?;
        let lb = lbs.load_balancers().first().ok_or_else(|| missing(&format!("load balancer {arn}")))?;
        let azs = lb.availability_zones().iter().filter_map(|z| z.zone_name().map(str::to_string)).collect();
        resources.push((arn.clone(), lb.load_balancer_name().unwrap_or(arn).to_string(), pairs(azs)?));
    }
    let groups = web
        .autoscaling()
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(arch.group_names()))
        .send()
        .await
        .map_err(aws_err("autoscaling", "DescribeAutoScalingGroups"))?;
    for g in groups.auto_scaling_groups() {
        let arn = g.auto_scaling_group_arn().ok_or_else(|| missing("Auto Scaling group ARN"))?;
        let mut azs: Vec<String> = g.availability_zones().to_vec();
        azs.sort();
        resources.push((arn.to_string(), g.auto_scaling_group_name().unwrap_or(arn).to_string(), pairs(azs)?));
    }
    let client = reqwest::Client::new();
    let url = format!("{}/_standin/register", endpoint.trim_end_matches('/'));
    let mut out = Vec::new();
    for (arn, name, azs) in resources {
        let body = serde_json::json!({"arn": arn, "name": name, "azs": azs, "autoshift": false});
        let failed = |e: String| Error::Delivery { channel: url.clone(), message: format!("registering {arn}: {e}") };
        let resp = client.post(&url).json(&body).send().await.map_err(|e| failed(e.to_string()))?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(failed(format!("{status}: {}", resp.text().await.unwrap_or_default())));
        }
        out.push(arn);
    }
    Ok(out)
}

/// An Auto Scaling group over `subnets` (one per AZ, in [`AZS`] order) with `per_az[i]` members in
/// subnet `i`, at most twice that many. The instances are launched per subnet and attached, because an
/// emulator that launches a group's capacity in one call puts it all in one AZ.
pub async fn provision_group(
    aws: &Aws,
    name: &str,
    launch_template_id: &str,
    subnets: &[String],
    per_az: &[i32],
    tags: &[(&str, &str)],
) -> Result<()> {
    use aws_sdk_ec2::types::{ResourceType, Tag as Ec2Tag, TagSpecification};
    let desired: i32 = per_az.iter().sum();
    let autoscaling = aws.autoscaling();
    let template = aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
        .launch_template_id(launch_template_id)
        .version("$Latest")
        .build();
    let mut create = autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(template)
        .min_size(0)
        .max_size(desired * 2)
        .desired_capacity(0)
        .health_check_type("EC2")
        .vpc_zone_identifier(subnets.join(","));
    for (k, v) in tags {
        create = create.tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .key(*k)
                .value(*v)
                .propagate_at_launch(true)
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .build(),
        );
    }
    create.send().await.map_err(aws_err("autoscaling", "CreateAutoScalingGroup"))?;
    let mut instance_tags = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags.iter().chain([("Name", name)].iter()) {
        instance_tags = instance_tags.tags(Ec2Tag::builder().key(*k).value(*v).build());
    }
    let instance_tags = instance_tags.build();
    let mut launched = Vec::new();
    for (subnet, count) in subnets.iter().zip(per_az).filter(|(_, n)| **n > 0) {
        let run = aws
            .ec2()
            .run_instances()
            .launch_template(
                aws_sdk_ec2::types::LaunchTemplateSpecification::builder()
                    .launch_template_id(launch_template_id)
                    .version("$Latest")
                    .build(),
            )
            .subnet_id(subnet)
            .min_count(*count)
            .max_count(*count)
            .tag_specifications(instance_tags.clone())
            .send()
            .await
            .map_err(aws_err("ec2", "RunInstances"))?;
        launched.extend(run.instances().iter().filter_map(|i| i.instance_id()).map(str::to_string));
    }
    autoscaling
        .attach_instances()
        .auto_scaling_group_name(name)
        .set_instance_ids(Some(launched))
        .send()
        .await
        .map_err(aws_err("autoscaling", "AttachInstances"))?;
    // Ready for an AZ evacuation: zonal shift on (ARC may shift the group), and the members of an
    // impaired AZ left alone rather than replaced there.
    let policy = aws_sdk_autoscaling::types::AvailabilityZoneImpairmentPolicy::builder()
        .zonal_shift_enabled(true)
        .impaired_zone_health_check_behavior(
            aws_sdk_autoscaling::types::ImpairedZoneHealthCheckBehavior::IgnoreUnhealthy,
        )
        .build();
    autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(desired)
        .desired_capacity(desired)
        .availability_zone_impairment_policy(policy)
        .send()
        .await
        .map_err(aws_err("autoscaling", "UpdateAutoScalingGroup"))?;
    Ok(())
}

/// The fleet's databases: `count` single-AZ MySQL writers named `{prefix}-db-NN`, writer `i` in
/// `AZS[i % 3]`, each with a read replica in each of the two other AZs (`-replica-b`, ...: the AZ's
/// letter). Created a few at a time.
async fn provision_fleet_databases(
    aws: &Aws,
    prefix: &str,
    count: usize,
    tags: &[(&str, &str)],
) -> Result<Vec<FleetDatabase>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let rds = aws.rds();
    let rds_tags = || tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build()).collect();
    let width = count.to_string().len().max(2);
    let specs: Vec<FleetDatabase> = (0..count)
        .map(|i| {
            let primary = format!("{prefix}-db-{i:0width$}");
            let az = AZS[i % AZS.len()];
            let replicas = AZS
                .iter()
                .filter(|z| **z != az)
                .map(|z| format!("{primary}-replica-{}", z.chars().last().unwrap_or('x')))
                .collect();
            FleetDatabase { primary, az: az.to_string(), replicas }
        })
        .collect();
    stream::iter(specs.iter().map(|d| {
        let rds = rds.clone();
        async move {
            rds.create_db_instance()
                .db_instance_identifier(&d.primary)
                .engine("mysql")
                .db_instance_class("db.t3.medium")
                .allocated_storage(20)
                .master_username("admin")
                .master_user_password("gameday-password-1")
                .availability_zone(&d.az)
                .multi_az(false)
                .backup_retention_period(7)
                .set_tags(Some(rds_tags()))
                .send()
                .await
                .map_err(aws_err("rds", "CreateDBInstance"))?;
            for (replica, az) in d.replicas.iter().zip(AZS.iter().filter(|z| **z != d.az)) {
                rds.create_db_instance_read_replica()
                    .db_instance_identifier(replica)
                    .source_db_instance_identifier(&d.primary)
                    .availability_zone(*az)
                    .set_tags(Some(rds_tags()))
                    .send()
                    .await
                    .map_err(aws_err("rds", "CreateDBInstanceReadReplica"))?;
            }
            Ok::<(), Error>(())
        }
    }))
    .buffer_unordered(4)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(specs)
}

/// The web tier's front: an internet-facing ALB over the three subnets, a target group whose HTTP
/// health check takes failing instances out of rotation, a listener, and the group's members
/// registered as its targets. Returns (load balancer ARN, target group ARN).
///
/// The members are registered here rather than by attaching the target group to the Auto Scaling
/// group: moto re-registers every member of an attached group on each change of its capacity and
/// refuses when one is stopped ("not in a running state"; AWS registers only the new members), so an
/// evacuation raising a group whose members in the lost AZ are stopped (`lose-az`) would fail there
/// and nowhere else.
async fn provision_load_balancer(
    aws: &Aws,
    prefix: &str,
    vpc_id: &str,
    subnet_ids: &[String],
    security_group_id: &str,
    asg_name: &str,
    tags: &[(&str, &str)],
) -> Result<(String, String)> {
    use aws_sdk_elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag, TargetDescription,
    };
    let elb = aws.elbv2();
    let elb_tags = || tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect::<Vec<_>>();
    let lb = elb
        .create_load_balancer()
        .name(format!("{prefix}-web"))
        .r#type(LoadBalancerTypeEnum::Application)
        .scheme(LoadBalancerSchemeEnum::InternetFacing)
        .set_subnets(Some(subnet_ids.to_vec()))
        .security_groups(security_group_id)
        .set_tags(Some(elb_tags()))
        .send()
        .await
        .map_err(aws_err("elasticloadbalancing", "CreateLoadBalancer"))?;
    let lb_arn = lb
        .load_balancers()
        .first()
        .and_then(|l| l.load_balancer_arn())
        .ok_or_else(|| missing("load balancer ARN"))?
        .to_string();
    // Ready for an AZ evacuation: without this attribute ARC cannot shift the load balancer.
    elb.modify_load_balancer_attributes()
        .load_balancer_arn(&lb_arn)
        .attributes(
            aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
                .key(selfheal::zone::lbs::ZONAL_SHIFT_ATTRIBUTE)
                .value("true")
                .build(),
        )
        .send()
        .await
        .map_err(aws_err("elasticloadbalancing", "ModifyLoadBalancerAttributes"))?;
    let tg = elb
        .create_target_group()
        .name(format!("{prefix}-web"))
        .protocol(ProtocolEnum::Http)
        .port(80)
        .vpc_id(vpc_id)
        .health_check_protocol(ProtocolEnum::Http)
        .health_check_path("/health")
        .health_check_interval_seconds(10)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(2)
        .set_tags(Some(elb_tags()))
        .send()
        .await
        .map_err(aws_err("elasticloadbalancing", "CreateTargetGroup"))?;
    let tg_arn = tg
        .target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .ok_or_else(|| missing("target group ARN"))?
        .to_string();
    elb.create_listener()
        .load_balancer_arn(&lb_arn)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tg_arn).build())
        .send()
        .await
        .map_err(aws_err("elasticloadbalancing", "CreateListener"))?;
    let group = aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg_name)
        .send()
        .await
        .map_err(aws_err("autoscaling", "DescribeAutoScalingGroups"))?;
    let targets: Vec<TargetDescription> = group
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.instances())
        .filter_map(|i| i.instance_id())
        .map(|id| TargetDescription::builder().id(id).port(80).build())
        .collect();
    elb.register_targets()
        .target_group_arn(&tg_arn)
        .set_targets(Some(targets))
        .send()
        .await
        .map_err(aws_err("elasticloadbalancing", "RegisterTargets"))?;
    Ok((lb_arn, tg_arn))
}

/// The session store: a DynamoDB table with point-in-time recovery on, under the gold backup policy,
/// holding a few items (the data tier's NoSQL store; the restore test restores it and counts them).
async fn provision_sessions_table(aws: &Aws, prefix: &str, tags: &[(&str, &str)]) -> Result<String> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
        ScalarAttributeType, Tag,
    };
    let ddb = aws.dynamodb();
    let name = format!("{prefix}-sessions");
    let mut all_tags = tags.to_vec();
    all_tags.push(("selfheal:backup", "gold"));
    let tags = all_tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(aws_err("dynamodb", "CreateTable"))?;
    ddb.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(aws_err("dynamodb", "CreateTable"))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .map_err(aws_err("dynamodb", "CreateTable"))?,
        )
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(aws_err("dynamodb", "CreateTable"))?;
    ddb.update_continuous_backups()
        .table_name(&name)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(aws_err("dynamodb", "UpdateContinuousBackups"))?,
        )
        .send()
        .await
        .map_err(aws_err("dynamodb", "UpdateContinuousBackups"))?;
    for i in 0..5 {
        ddb.put_item()
            .table_name(&name)
            .item("id", AttributeValue::S(format!("session-{i}")))
            .item("user", AttributeValue::S(format!("user-{i}")))
            .send()
            .await
            .map_err(aws_err("dynamodb", "PutItem"))?;
    }
    Ok(name)
}

/// The static content: a versioned bucket (the reference architecture's durability for static assets)
/// under the gold backup policy, holding the site's index page in two versions (the restore test
/// restores the previous one). Returns the bucket name.
async fn provision_static_content(aws: &Aws, prefix: &str, tags: &[(&str, &str)]) -> Result<String> {
    use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, VersioningConfiguration};
    let s3 = aws.s3();
    let bucket = format!("{prefix}-static");
    s3.create_bucket().bucket(&bucket).send().await.map_err(aws_err("s3", "CreateBucket"))?;
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(aws_err("s3", "PutBucketVersioning"))?;
    let tag_set = tags
        .iter()
        .chain([("selfheal:backup", "gold")].iter())
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(aws_err("s3", "PutBucketTagging"))?;
    let tagging = Tagging::builder().set_tag_set(Some(tag_set)).build().map_err(aws_err("s3", "PutBucketTagging"))?;
    s3.put_bucket_tagging().bucket(&bucket).tagging(tagging).send().await.map_err(aws_err("s3", "PutBucketTagging"))?;
    for page in [&b"<h1>selfheal game day</h1>\n"[..], &b"<h1>selfheal game day</h1>\n<p>v2</p>\n"[..]] {
        s3.put_object()
            .bucket(&bucket)
            .key("index.html")
            .content_type("text/html")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(page))
            .send()
            .await
            .map_err(aws_err("s3", "PutObject"))?;
    }
    Ok(bucket)
}

async fn provision_dns(
    aws: &Aws,
    prefix: &str,
    db_endpoint: &str,
    tags: &[(&str, &str)],
) -> Result<(String, String, String, String, String)> {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord, ResourceRecordSet,
        ResourceRecordSetFailover, RrType, Tag, TagResourceType,
    };
    let r53 = aws.route53();
    let zone_name = format!("{prefix}.example.com.");
    let zone = r53
        .create_hosted_zone()
        .name(&zone_name)
        .caller_reference(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .map_err(aws_err("route53", "CreateHostedZone"))?;
    let zone_id = zone
        .hosted_zone()
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
        .ok_or_else(|| missing("hosted zone id"))?;
    let r53_tags: Vec<Tag> = tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect();
    r53.change_tags_for_resource()
        .resource_type(TagResourceType::Hostedzone)
        .resource_id(&zone_id)
        .set_add_tags(Some(r53_tags.clone()))
        .send()
        .await
        .map_err(aws_err("route53", "ChangeTagsForResource"))?;

    let (primary_ip, secondary_ip) = ("192.0.2.10".to_string(), "198.51.100.10".to_string());
    let mut checks = Vec::new();
    for ip in [&primary_ip, &secondary_ip] {
        let hc = r53
            .create_health_check()
            .caller_reference(uuid::Uuid::new_v4().to_string())
            .health_check_config(
                HealthCheckConfig::builder()
                    .r#type(HealthCheckType::Http)
                    .ip_address(ip.as_str())
                    .port(80)
                    .resource_path("/health")
                    .request_interval(10)
                    .failure_threshold(3)
                    .build()
                    .map_err(aws_err("route53", "CreateHealthCheck"))?,
            )
            .send()
            .await
            .map_err(aws_err("route53", "CreateHealthCheck"))?;
        let id = hc.health_check().map(|h| h.id().to_string()).ok_or_else(|| missing("health check id"))?;
        r53.change_tags_for_resource()
            .resource_type(TagResourceType::Healthcheck)
            .resource_id(&id)
            .set_add_tags(Some(r53_tags.clone()))
            .send()
            .await
            .map_err(aws_err("route53", "ChangeTagsForResource"))?;
        checks.push(id);
    }
    // Created with UPSERT and no trailing dot: the emulator matches later DELETEs of a failover swap
    // against the exact request that created a set.
    let app = format!("app.{}", zone_name.trim_end_matches('.'));
    let record = |id: &str, failover: ResourceRecordSetFailover, ip: &str, hc: &str| -> Result<Change> {
        let rrs = ResourceRecordSet::builder()
            .name(&app)
            .r#type(RrType::A)
            .set_identifier(id)
            .failover(failover)
            .ttl(60)
            .health_check_id(hc)
            .resource_records(ResourceRecord::builder().value(ip).build().map_err(aws_err("route53", "Change"))?)
            .build()
            .map_err(aws_err("route53", "Change"))?;
        Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(rrs)
            .build()
            .map_err(aws_err("route53", "Change"))
    };
    let db_cname = ResourceRecordSet::builder()
        .name(format!("db.{zone_name}"))
        .r#type(RrType::Cname)
        .ttl(30)
        .resource_records(ResourceRecord::builder().value(db_endpoint).build().map_err(aws_err("route53", "Change"))?)
        .build()
        .map_err(aws_err("route53", "Change"))?;
    let batch = ChangeBatch::builder()
        .comment("selfheal game day")
        .changes(record("primary", ResourceRecordSetFailover::Primary, &primary_ip, &checks[0])?)
        .changes(record("secondary", ResourceRecordSetFailover::Secondary, &secondary_ip, &checks[1])?)
        .changes(
            Change::builder()
                .action(ChangeAction::Create)
                .resource_record_set(db_cname)
                .build()
                .map_err(aws_err("route53", "Change"))?,
        )
        .build()
        .map_err(aws_err("route53", "Change"))?;
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(aws_err("route53", "ChangeResourceRecordSets"))?;
    let (p, s) = (checks[0].clone(), checks[1].clone());
    Ok((zone_id, p, s, primary_ip, secondary_ip))
}
