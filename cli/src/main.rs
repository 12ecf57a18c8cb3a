//! `selfheal`: the operators' command. `selfheal preflight --stack NAME` proves a deployed stack before
//! its first incident (rules, roles, dry runs, member accounts, ledger, topics, key, queue, coverage:
//! `selfheal::preflight`) and prints what holds and what to fix; `selfheal coverage --stack NAME`
//! only the coverage. Exit status: 0 when everything holds, 1 when something does not, 2 when
//! preflight could not run (bad arguments, no such stack, no credentials).
//!
//! The stack's names come from its CloudFormation outputs and parameters (`DescribeStacks`); the
//! caller's credentials and region are the SDK's usual ones (profile, environment, `--region`).

use std::process::ExitCode;

use selfheal::clients::Aws;
use selfheal::preflight::{self, Deployment, Scope};

const USAGE: &str = "usage: selfheal <preflight|coverage> --stack NAME [--region REGION] [--json]
       [--members ACCOUNT,...] [--member-role NAME] [--external-id ID]

  preflight   prove a deployed stack: each rule against AWS's sample events, each role's calls
              simulated, EC2 dry runs, member roles assumed, ledger, topics, key, dead-letter queue,
              schedules, and which opted-in resources have an alarm that reaches the suite
  coverage    only the last: opted-in instances, databases, health checks and load balancers
              with or without an alarm that reaches the suite

  --members      member accounts to try (default: the stack's MemberAccounts parameter)
  --member-role  the role to assume there (default: selfheal-preflight, infra/member.yaml)
  --external-id  the member roles' external id (the stack's MemberExternalId)
  --json         print the report as JSON instead of a table

exit status: 0 everything holds, 1 something to fix, 2 preflight could not run";

/// The command line, parsed.
#[derive(Debug, Default, PartialEq)]
struct Args {
    scope: Option<Scope>,
    stack: Option<String>,
    region: Option<String>,
    json: bool,
    members: Option<Vec<String>>,
    member_role: Option<String>,
    external_id: Option<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "preflight" if out.scope.is_none() => out.scope = Some(Scope::Everything),
            "coverage" if out.scope.is_none() => out.scope = Some(Scope::CoverageOnly),
            "--stack" => out.stack = Some(value("--stack")?),
            "--region" => out.region = Some(value("--region")?),
            "--json" => out.json = true,
            "--members" => {
                let list: Vec<String> =
                    value("--members")?.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                if let Some(bad) = list.iter().find(|a| !selfheal::ids::is_account_id(a)) {
                    return Err(format!("--members: {bad:?} is not a 12-digit account id"));
                }
                out.members = Some(list);
            }
            "--member-role" => out.member_role = Some(value("--member-role")?),
            "--external-id" => out.external_id = Some(value("--external-id")?),
            "-h" | "--help" | "help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if out.scope.is_none() {
        return Err("name a command: preflight or coverage".into());
    }
    if out.stack.is_none() {
        return Err("--stack NAME is required (the selfheal stack's name)".into());
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("selfheal: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report.to_json()).unwrap_or_default());
            } else {
                print!("{}", report.render());
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("selfheal: preflight could not run: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> Result<preflight::Report, String> {
    let mut aws = Aws::from_env().await;
    if let Some(r) = &args.region {
        aws = aws.in_region(r);
    }
    let stack = args.stack.clone().unwrap_or_default();
    let region = aws.sdk.region().map(|r| r.to_string()).ok_or("no region: set AWS_REGION or pass --region")?;
    let account = preflight::caller_account(&aws).await.map_err(|e| e.to_string())?;
    let cfn = aws_sdk_cloudformation::Client::new(&aws.sdk);
    let described = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .map_err(|e| selfheal::Error::aws("cloudformation", "DescribeStacks", e).to_string())?;
    let s = described.stacks().first().ok_or_else(|| format!("no stack named {stack} in {region}"))?;
    let outputs = s.outputs().iter().filter_map(|o| Some((o.output_key()?, o.output_value()?)));
    let mut d = Deployment::from_outputs(&stack, &account, &region, outputs);
    let param = |key: &str| {
        s.parameters()
            .iter()
            .find(|p| p.parameter_key() == Some(key))
            .and_then(|p| p.parameter_value())
            .map(str::to_string)
    };
    if let Some(v) = param("OptInTagValue") {
        d.opt_in_value = v;
    }
    d.members = match &args.members {
        Some(m) => m.clone(),
        None => param("MemberAccounts")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| selfheal::ids::is_account_id(a))
            .map(String::from)
            .collect(),
    };
    d.member_role = args.member_role.clone();
    d.external_id = args.external_id.clone();
    Ok(preflight::run(&aws, &d, args.scope.unwrap_or(Scope::Everything)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn the_command_line_is_read_and_bad_ones_are_named() {
        let a = args("preflight --stack prod --json --members 111111111111,222222222222").unwrap();
        assert_eq!(a.scope, Some(Scope::Everything));
        assert_eq!(a.stack.as_deref(), Some("prod"));
        assert!(a.json);
        assert_eq!(a.members.unwrap().len(), 2);
        assert_eq!(args("coverage --stack p").unwrap().scope, Some(Scope::CoverageOnly));
        assert!(args("preflight").unwrap_err().contains("--stack"));
        assert!(args("--stack p").unwrap_err().contains("preflight or coverage"));
        assert!(args("preflight --stack p --members 12").unwrap_err().contains("12-digit"));
        assert!(args("preflight --stack").unwrap_err().contains("needs a value"));
        assert!(args("preflight --stack p --bogus").unwrap_err().contains("--bogus"));
    }
}
