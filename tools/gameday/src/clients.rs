//! The clients only provisioning calls: S3 (the static-content bucket) and Elastic Load Balancing (the
//! web tier's load balancer), built on the library's [`Aws`] configuration and call log like its own.
//! The deployed drill makes neither call.

use selfheal::clients::Aws;

/// S3 and ELBv2 clients on an [`Aws`] (`use gameday::ProvisioningClients` to call `aws.s3()`).
pub trait ProvisioningClients {
    /// S3 with path-style addressing, which works against an endpoint override on an IP address.
    fn s3(&self) -> aws_sdk_s3::Client;
    fn elbv2(&self) -> aws_sdk_elasticloadbalancingv2::Client;
}

impl ProvisioningClients for Aws {
    fn s3(&self) -> aws_sdk_s3::Client {
        let conf =
            aws_sdk_s3::config::Builder::from(&self.sdk).force_path_style(true).interceptor(self.calls.clone()).build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    fn elbv2(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        let conf =
            aws_sdk_elasticloadbalancingv2::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        aws_sdk_elasticloadbalancingv2::Client::from_conf(conf)
    }
}
