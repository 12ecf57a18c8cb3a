"""The boto3 peer of a selfheal function for the cold-start benchmark: the same setup a selfheal
function does before its first poll, written as a Python Lambda author would at module level.

Every selfheal function at init reads and checks its configuration from the environment, loads the
SDK configuration (region, credentials chain) with adaptive retries and timeouts, and builds its
DynamoDB (ledger) and SNS (events topic) clients; the notifier also builds its webhook HTTP client.
Service clients (EC2, RDS, ...) are built per invocation on both sides, so neither builds them here.
"""

import os

import boto3
import botocore.config

FUNCTION = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
LEDGER_TABLE = os.environ["SELFHEAL_LEDGER_TABLE"]
TOPIC_ARN = os.environ.get("SELFHEAL_TOPIC_ARN", "")
DRY_RUN = os.environ.get("SELFHEAL_DRY_RUN", "false").lower() == "true"

_config = botocore.config.Config(
    retries={"mode": "adaptive", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=10,
)
_session = boto3.session.Session()
dynamodb = _session.client("dynamodb", config=_config)
sns = _session.client("sns", config=_config)

if FUNCTION == "notifier":
    import urllib3

    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3.0, read=3.0), headers={"user-agent": "peer/1"})


def handler(event, context):
    return {"decisions": []}
