//! drill-cli: the game day from a terminal (package `gameday`, dev only: the deployed drill is
//! `functions/drill`).
//!
//! ```text
//! drill-cli provision --out architecture.json --env-file functions.env [--function-env-dir DIR]
//!                     [--accounts N] [--fleet] [--fleet-databases N] [--opt-in-value V]
//!     creates the reference architecture (in whatever AWS_ENDPOINT_URL points at) and writes the
//!     functions' environment for it (and, with --function-env-dir, DIR/<function>.env with what a
//!     function gets differently, as the template sets it); with N >= 2 spread over the hub and N-1
//!     member accounts (web tier in 111111111111, data tier in 222222222222, backup volumes
//!     round-robin); with --fleet also the larger fleet az-outage drills (three more Auto Scaling
//!     groups, and 60 databases with two replicas each, or --fleet-databases N); every resource opted
//!     in with selfheal:enabled=true (or =V). With AWS_ENDPOINT_URL_ARC_ZONAL_SHIFT set (the ARC
//!     stand-in, arc-standin), registers the load balancer and groups with it.
//! drill-cli run --architecture architecture.json --lambda http://127.0.0.1:9000
//!               [--scenario all|NAME] [--mode dry-run|live] [--confirm] [--json FILE]
//!               [--html FILE] [--targets FILE | --policy-arn ARN]
//!     runs scenarios, delivering events to the Lambda runtime emulator; prints the reports (and
//!     writes them as JSON to FILE) and the scorecard against the RTO/RPO targets (a Resilience Hub
//!     policy, a JSON file of the same shape, or the defaults), and with --html writes the
//!     self-contained HTML report; exits 1 if any scenario failed
//! drill-cli sandbox-events --architecture architecture.json --out DIR
//!     writes one sample event per function naming the architecture's real resources, and
//!     DIR/invocations.json saying what each should come to (scripts/sandbox)
//! drill-cli approval-request --architecture architecture.json --token T [--action approve|reject]
//!               [--as NAME]
//!     prints the request AWS would hand a function for a signed POST to its approval URL by the
//!     approver session NAME (default alice) of the game day's approver role (scripts/sandbox approve)
//! ```

use std::process::ExitCode;

use selfheal::drill::{self, Architecture, Deliverer, Drill, DrillConfig, DrillRequest, Mode, Scenario};

const USAGE: &str = "usage:
  drill-cli provision --out FILE --env-file FILE [--function-env-dir DIR] [--accounts N] [--fleet]
                      [--fleet-databases N] [--opt-in-value V]
  drill-cli run --architecture FILE --lambda URL [--scenario all|NAME] [--mode dry-run|live] [--confirm]
                [--json FILE] [--html FILE] [--targets FILE | --policy-arn ARN]
  drill-cli sandbox-events --architecture FILE --out DIR
  drill-cli approval-request --architecture FILE --token T [--action approve|reject] [--as NAME]";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn required(args: &[String], name: &str) -> Result<String, String> {
    flag(args, name).ok_or_else(|| format!("missing {name}\n{USAGE}"))
}

async fn provision(args: &[String]) -> Result<(), String> {
    let out = required(args, "--out")?;
    let env_file = required(args, "--env-file")?;
    let accounts: usize = match flag(args, "--accounts") {
        None => 1,
        Some(n) => n.parse().ok().filter(|n| (1..=gameday::provision::MAX_ACCOUNTS).contains(n)).ok_or_else(|| {
            format!("--accounts must be 1 to {}, got {n:?}\n{USAGE}", gameday::provision::MAX_ACCOUNTS)
        })?,
    };
    let fleet_databases = match flag(args, "--fleet-databases") {
        Some(n) => Some(fleet_size(&n)?),
        None if args.iter().any(|a| a == "--fleet") => Some(gameday::provision::DEFAULT_FLEET_DATABASES),
        None => None,
    };
    let opt_in_value = flag(args, "--opt-in-value").unwrap_or_else(|| "true".to_string());
    if opt_in_value.is_empty() || !opt_in_value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(format!("--opt-in-value must be letters, digits and -_.: only, got {opt_in_value:?}\n{USAGE}"));
    }
    let aws = selfheal::clients::Aws::from_env().await;
    let prefix = format!("gameday-{}", &uuid_like()[..8]);
    let ledger = format!("{prefix}-ledger");
    let options = gameday::ProvisionOptions { accounts, fleet_databases };
    let arch = gameday::provision::provision_with(&aws, &prefix, &ledger, ("selfheal:enabled", &opt_in_value), options)
        .await
        .map_err(|e| format!("provisioning failed: {e}"))?;
    let json = serde_json::to_string_pretty(&arch).map_err(|e| e.to_string())?;
    std::fs::write(&out, json).map_err(|e| format!("{out}: {e}"))?;
    let render =
        |vars: Vec<(String, String)>| -> String { vars.into_iter().map(|(k, v)| format!("{k}='{v}'\n")).collect() };
    let env = if args.iter().any(|a| a == "--sandbox") {
        gameday::env::sandbox_env(&arch)
    } else {
        gameday::gameday_env(&arch)
    };
    std::fs::write(&env_file, render(env)).map_err(|e| format!("{env_file}: {e}"))?;
    if let Some(dir) = flag(args, "--function-env-dir") {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
        for function in gameday::env::OVERRIDDEN {
            let path = std::path::Path::new(&dir).join(format!("{function}.env"));
            std::fs::write(&path, render(gameday::env::function_overrides(function)))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    match std::env::var("AWS_ENDPOINT_URL_ARC_ZONAL_SHIFT") {
        Ok(arc) if !arc.is_empty() => {
            let registered = gameday::provision::register_with_arc(&aws, &arch, &arc)
                .await
                .map_err(|e| format!("registering with the ARC stand-in at {arc}: {e}"))?;
            println!("registered {} resources with the ARC stand-in at {arc}", registered.len());
        }
        _ => println!("AWS_ENDPOINT_URL_ARC_ZONAL_SHIFT is not set: no ARC stand-in to register the resources with"),
    }
    println!(
        "provisioned {prefix}: ALB + ASG {} ({} instances over 3 AZs), RDS {} + {} replicas, zone {}, bucket {}",
        arch.asg_name,
        arch.asg_desired,
        arch.db_primary,
        arch.db_replicas.len(),
        arch.zone_name,
        arch.static_bucket.as_deref().unwrap_or("-")
    );
    if let Some(fleet) = &arch.fleet {
        let groups: Vec<String> = fleet
            .groups
            .iter()
            .map(|g| format!("{} ({})", g.name, g.per_az.iter().map(i32::to_string).collect::<Vec<_>>().join("/")))
            .collect();
        println!(
            "fleet for az-outage: groups {} (members per AZ), {} databases with {} replicas",
            groups.join(", "),
            fleet.databases.len(),
            fleet.databases.iter().map(|d| d.replicas.len()).sum::<usize>()
        );
    }
    if !arch.member_accounts().is_empty() {
        let volumes: Vec<String> = arch
            .backup_volumes
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{v}@{}", arch.volume_member(i).unwrap_or("hub")))
            .collect();
        println!(
            "accounts: hub {} (ledger, topic, DNS), web tier {}, data tier {}, backup volumes {}",
            arch.home(),
            arch.web_member().unwrap_or("hub"),
            arch.db_member().unwrap_or("hub"),
            volumes.join(" ")
        );
    }
    Ok(())
}

/// `--fleet-databases N`: 3 (one writer in each AZ) to the most the fleet may have.
fn fleet_size(n: &str) -> Result<usize, String> {
    let max = gameday::provision::MAX_FLEET_DATABASES;
    n.parse::<usize>()
        .ok()
        .filter(|n| (3..=max).contains(n))
        .ok_or_else(|| format!("--fleet-databases must be 3 to {max}, got {n:?}\n{USAGE}"))
}

fn uuid_like() -> String {
    format!(
        "{:016x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    )
    .chars()
    .rev()
    .collect()
}

async fn run(args: &[String]) -> Result<bool, String> {
    let arch_path = required(args, "--architecture")?;
    let lambda = required(args, "--lambda")?;
    let text = std::fs::read_to_string(&arch_path).map_err(|e| format!("{arch_path}: {e}"))?;
    let arch: Architecture = serde_json::from_str(&text).map_err(|e| format!("{arch_path}: {e}"))?;
    let scenarios = match flag(args, "--scenario").as_deref() {
        None | Some("all") => Scenario::ALL.to_vec(),
        Some(name) => vec![Scenario::parse(name).map_err(|e| e.to_string())?],
    };
    let mode = Mode::parse(flag(args, "--mode").as_deref().unwrap_or("live")).map_err(|e| e.to_string())?;
    if mode == Mode::Live && !args.iter().any(|a| a == "--confirm") {
        return Err("a live drill injects real faults: pass --confirm".into());
    }
    let vars: Vec<(String, String)> = gameday::gameday_env(&arch);
    let mut env = selfheal::config::Env::from_map(vars.into_iter().collect());
    let common = selfheal::config::CommonConfig::read(&mut env, drill::FUNCTION);
    let cfg = DrillConfig::read(&mut env);
    env.finish().map_err(|e| e.to_string())?;
    let aws = selfheal::clients::Aws::load(&common.aws_timeouts).await;
    let drill = Drill {
        ctx: selfheal::Ctx::new(common, aws),
        cfg,
        deliverer: Deliverer::http(&lambda).map_err(|e| e.to_string())?,
    };
    let reports = drill.run(&DrillRequest { scenarios, mode }, &arch).await.map_err(|e| e.to_string())?;
    println!("{}", drill::report::render_all(&reports));
    // The scorecard (issue #20): targets from --policy-arn, --targets FILE, the same settings in the
    // environment, or the defaults; printed after the table and, with --html, drawn as a page.
    let mut target_vars: std::collections::HashMap<String, String> =
        ["SELFHEAL_DRILL_RESILIENCY_POLICY_ARN", "SELFHEAL_DRILL_TARGETS"]
            .into_iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
    if let Some(arn) = flag(args, "--policy-arn") {
        target_vars.insert("SELFHEAL_DRILL_RESILIENCY_POLICY_ARN".into(), arn);
    }
    if let Some(file) = flag(args, "--targets") {
        target_vars.insert("SELFHEAL_DRILL_TARGETS".into(), format!("@{file}"));
    }
    let mut env = selfheal::config::Env::from_map(target_vars);
    let source = drill::targets::TargetSource::read(&mut env);
    env.finish().map_err(|e| e.to_string())?;
    let card = drill::scorecard::assess(&drill, &reports, &arch, &source, false).await;
    println!("{}", card.render());
    if let Some(path) = flag(args, "--html") {
        std::fs::write(&path, drill::html::render(&card, &reports)).map_err(|e| format!("{path}: {e}"))?;
        println!("HTML report: {path}");
    }
    if let Some(path) = flag(args, "--json") {
        let json = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(reports.iter().all(|r| r.passed))
}

async fn sandbox_events(args: &[String]) -> Result<(), String> {
    let arch_path = required(args, "--architecture")?;
    let out = std::path::PathBuf::from(required(args, "--out")?);
    let text = std::fs::read_to_string(&arch_path).map_err(|e| format!("{arch_path}: {e}"))?;
    let arch: Architecture = serde_json::from_str(&text).map_err(|e| format!("{arch_path}: {e}"))?;
    let aws = selfheal::clients::Aws::from_env().await;
    let groups = aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&arch.asg_name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "listing {}: {}",
                arch.asg_name,
                selfheal::Error::aws("autoscaling", "DescribeAutoScalingGroups", e)
            )
        })?;
    let instance = groups
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.instances())
        .find(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .and_then(|i| i.instance_id())
        .ok_or_else(|| format!("{} has no in-service instance", arch.asg_name))?
        .to_string();
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let invocations = gameday::sandbox::invocations(&arch, &instance);
    for i in &invocations {
        let path = out.join(&i.file);
        let json = serde_json::to_string_pretty(&i.event).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let index = serde_json::to_string_pretty(&invocations).map_err(|e| e.to_string())?;
    let path = out.join("invocations.json");
    std::fs::write(&path, index).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn approval_request(args: &[String]) -> Result<(), String> {
    let path = required(args, "--architecture")?;
    let arch: Architecture = serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?)
        .map_err(|e| format!("{path}: {e}"))?;
    let token = required(args, "--token")?;
    let action = flag(args, "--action").unwrap_or_else(|| "approve".into());
    if action != "approve" && action != "reject" {
        return Err(format!("--action must be approve or reject, got {action:?}\n{USAGE}"));
    }
    let name = flag(args, "--as").unwrap_or_else(|| "alice".into());
    let caller = gameday::env::approver(&arch, &name);
    let body = selfheal::approval::url_body(&action, &token);
    println!("{}", gameday::approve::function_url_request(&caller, &body));
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    selfheal::telemetry::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("provision") => provision(&args).await.map(|_| true),
        Some("run") => run(&args).await,
        Some("sandbox-events") => sandbox_events(&args).await.map(|_| true),
        Some("approval-request") => approval_request(&args).map(|_| true),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("drill-cli: {e}");
            ExitCode::from(2)
        }
    }
}
