//! Fixtures several test modules share: the opt-in tag, SDK configuration acting in another account,
//! a regional EC2 client, an AMI, a healer with the tests' short waits, and a runtime with a big stack.

use aws_config::SdkConfig;
use selfheal::healer::{Healer, HealerConfig, FUNCTION as HEALER};

/// The suite's default opt-in tag and value.
pub const OPT_IN: (&str, &str) = ("selfheal:enabled", "true");

/// An instance id of the right shape that no test creates (substituted into sample events).
pub const PLACEHOLDER: &str = "i-0123456789abcdef0";

/// SDK configuration acting in `account`, through a role there (moto: credentials returned for a role
/// in an account act in that account; the role need not exist).
pub async fn in_account(account: &str) -> SdkConfig {
    let hub = crate::sdk_config().await;
    let out = aws_sdk_sts::Client::new(&hub)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/selfheal-test-setup"))
        .role_session_name("selfheal-test-setup")
        .send()
        .await
        .expect("moto assumes any role");
    let c = out.credentials().expect("credentials");
    let creds = aws_sdk_sts::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "test-setup",
    );
    hub.to_builder().credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(creds)).build()
}

/// An EC2 client acting in `sdk`'s account, in `region`.
pub fn ec2_in(sdk: &SdkConfig, region: &str) -> aws_sdk_ec2::Client {
    let conf =
        aws_sdk_ec2::config::Builder::from(sdk).region(aws_sdk_ec2::config::Region::new(region.to_string())).build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// The first Amazon-owned image moto serves.
pub async fn ami(ec2: &aws_sdk_ec2::Client) -> String {
    let images = ec2.describe_images().owners("amazon").send().await.unwrap();
    images.images()[0].image_id().unwrap().to_string()
}

/// An instance-healer on a fresh ledger, waiting up to 20 s and polling every second; `vars` add or
/// override settings.
pub async fn healer(vars: &[(&str, &str)]) -> Healer {
    let mut all: Vec<(&str, &str)> =
        vec![("SELFHEAL_HEALER_WAIT_SECONDS", "20"), ("SELFHEAL_HEALER_POLL_SECONDS", "1")];
    all.extend_from_slice(vars);
    let ctx = crate::ctx(HEALER, &all).await;
    let mut env = crate::env(&all);
    let cfg = HealerConfig::read(&mut env);
    env.finish().unwrap();
    Healer::new(ctx, cfg)
}

/// Runs `f` on a multi-threaded runtime with room to spare: handlers' futures are deep in a debug build
/// (a drill runs every handler's inside its own), more than a test thread's default stack.
pub fn on_big_stack<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_stack_size(64 << 20)
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
        .unwrap();
    worker.join().unwrap();
}
