"""Backup benchmark (issue #6): a full backup-enforcer sweep over N tagged EBS volumes against Cloud
Custodian doing the same snapshot job, both against one moto server in the same run.

Run through scripts/bench-backup (it installs the tools and builds the function). For each tool the
server is reset and seeded alike: N volumes tagged `selfheal:backup=gold` and `selfheal:enabled=true`
with no snapshot yet, plus
the ledger table and topic selfheal needs. Then:

- selfheal: the release backup-enforcer binary under a Runtime API stub gets the scheduled event
  (events/schedule-backup-sweep.json); timed from process start to its answer.
- Cloud Custodian: `custodian run` of an `ebs` policy filtering on the same tag with the `snapshot`
  action; timed from process start to exit.

Reported for both: wall time, peak memory and HTTP requests the server answered (moto's request log).
Peak memory is the process's own high-water mark (VmHWM in /proc/<pid>/status), read just before
selfheal is stopped and sampled every 50 ms until Custodian exits. Not wait4's ru_maxrss: Linux carries
the pre-exec high-water mark of the forked child over the exec, so it reports this script's own
memory (about 100 MiB with boto3 loaded) for any process smaller than that. Checked for both: each tool says it snapshotted every volume
(selfheal's compliance report, Custodian's resources.json), and a random sample of the volumes has
exactly one snapshot each. Not every volume is checked through the API: moto looks up each resource's
tags by scanning every tag in the account, so listing all 10,000 snapshots back takes it many minutes.

Datastores (issue #29; --scenario tables|buckets, --tables N, --buckets N, default 1,000 each): N tagged
DynamoDB tables without point-in-time recovery, or N tagged S3 buckets without versioning, and selfheal
with only that datastore type on (`SELFHEAL_BACKUP_S3` or `SELFHEAL_BACKUP_DYNAMODB` and
`SELFHEAL_BACKUP_RDS` false) against a Custodian policy on the same tags with `set-continuous-backup`
(aws.dynamodb-table) or `toggle-versioning` (aws.s3). Every table's PITR (and period, and deletion
protection) or every bucket's versioning (and lifecycle rules) is read back after each tool.
selfheal does more than either action (deletion protection; the noncurrent-version lifecycle rule):
--like-for-like adds a second pair seeded with that already done, so its only write is Custodian's.
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import boto3
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from runtime_api import RuntimeApi, peak_rss_kib  # noqa: E402

TAG, POLICY = "selfheal:backup", "gold"
# Both tools wait this long for one API attempt: moto takes minutes to answer Custodian's DescribeVolumes of
# 10,000 tagged volumes (it ignores MaxResults, and scans every tag for each volume), past either
# tool's default (selfheal 10 s, botocore 60 s); a retry would only queue the same work again.
ATTEMPT_TIMEOUT = 900
OPT_IN, OPT_IN_VALUE = "selfheal:enabled", "true"
REQUEST_LINE = re.compile(r'"(GET|POST|PUT|DELETE|HEAD|PATCH) (\S+) HTTP/1\.[01]"')
# werkzeug colours the request line of every answer other than 200 (204, 3xx, 4xx) with ANSI escapes,
# even into a file: they are taken out before matching, or those requests go uncounted.
ANSI = re.compile(r"\x1b\[[0-9;]*m")
C7N_POLICY = f"""\
policies:
  - name: bench-ebs-snapshot
    resource: aws.ebs
    filters:
      - "tag:{TAG}": {POLICY}
      - "tag:{OPT_IN}": "{OPT_IN_VALUE}"
    actions:
      - type: snapshot
        copy-tags: ["{TAG}"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, workdir):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moto.log"
        self.log = open(self.log_path, "w")
        moto = ROOT / ".venv" / "bin" / "moto_server"
        self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("moto did not start; see " + str(self.log_path))

    def requests(self):
        """Requests answered so far, not counting the emulator's own control API."""
        self.log.flush()
        n = 0
        with open(self.log_path) as f:
            for line in f:
                m = REQUEST_LINE.search(ANSI.sub("", line))
                if m and not m.group(2).startswith("/moto-api"):
                    n += 1
        return n

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).read()

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


def client(moto, service):
    # Long reads and no retries: a timed-out request keeps running in moto, and a retry would queue
    # the same work again behind it.
    return boto3.client(service, endpoint_url=moto.endpoint, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench",
                        config=Config(read_timeout=1800, retries={"max_attempts": 1}))


def seed_suite(moto):
    """Reset the server and create what selfheal itself needs (the ledger table, the topic); returns the topic."""
    moto.reset()
    ddb = client(moto, "dynamodb")
    ddb.create_table(TableName="selfheal-ledger", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    return client(moto, "sns").create_topic(Name="selfheal-events")["TopicArn"]


def seed(moto, volumes):
    """Reset the server and create the ledger, the topic and `volumes` tagged volumes."""
    topic = seed_suite(moto)
    ec2 = client(moto, "ec2")
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]

    def one(i):
        return ec2.create_volume(AvailabilityZone=zones[i % 3], Size=8, TagSpecifications=[{
            "ResourceType": "volume",
            "Tags": [{"Key": TAG, "Value": POLICY}, {"Key": OPT_IN, "Value": OPT_IN_VALUE},
                     {"Key": "Name", "Value": f"bench-{i}"}]}])["VolumeId"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(one, range(volumes)))
    return topic, ids


def sample_snapshots(moto, volume_ids, size):
    """Snapshots per volume for a random sample of `size` of the seeded volumes."""
    ec2 = client(moto, "ec2")
    sample = random.sample(sorted(volume_ids), min(size, len(volume_ids)))
    by_volume = {v: 0 for v in sample}
    for i in range(0, len(sample), 100):
        chunk = sample[i:i + 100]
        out = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": chunk}])
        for snap in out["Snapshots"]:
            by_volume[snap["VolumeId"]] += 1
    return by_volume


def time_one_listing(moto):
    """Seconds moto takes to answer each tool's listing of everything seeded, asked alone: Custodian's
    DescribeVolumes (every volume, with its tags) and selfheal's DescribeTags (the policy and opt-in
    tags of volumes); and how many volumes the first names."""
    ec2 = client(moto, "ec2")
    t0 = time.perf_counter()
    n = len(ec2.describe_volumes()["Volumes"])
    volumes = time.perf_counter() - t0
    t0 = time.perf_counter()
    ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["volume"]},
                               {"Name": "key", "Values": [TAG, OPT_IN]}])
    return volumes, time.perf_counter() - t0, n


def c7n_snapshotted(workdir):
    """The volumes Custodian's policy matched and acted on, from its output directory."""
    resources = workdir / "c7n-out" / "bench-ebs-snapshot" / "resources.json"
    return {r["VolumeId"] for r in json.loads(resources.read_text())}


class PeakMemory:
    """Samples a process's VmHWM (KiB) until it exits; `peak` is the last value read."""

    def __init__(self, pid, every=0.05):
        self.pid, self.every, self.peak, self.done = pid, every, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, peak_rss_kib(self.pid)[0])
            except OSError:
                return  # exited
            self.done.wait(self.every)

    def stop(self):
        """Reads once more (while the process still exists) and stops sampling."""
        try:
            self.peak = max(self.peak, peak_rss_kib(self.pid)[0])
        except OSError:
            pass
        self.done.set()
        self.thread.join()
        return self.peak


def run_selfheal(moto, topic, binary, concurrency, workdir, endpoint=None, extra=None):
    api = RuntimeApi()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "backup-enforcer",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_ENDPOINT_URL": endpoint or moto.endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "SELFHEAL_LEDGER_TABLE": "selfheal-ledger",
        "SELFHEAL_TOPIC_ARN": topic,
        "SELFHEAL_BACKUP_CONCURRENCY": str(concurrency),
        "SELFHEAL_AWS_ATTEMPT_TIMEOUT_SECONDS": str(ATTEMPT_TIMEOUT),
        "SELFHEAL_AWS_OPERATION_TIMEOUT_SECONDS": str(ATTEMPT_TIMEOUT),
        # The whole sweep, however long the emulator takes (in Lambda it stops starting work at 840 s).
        "SELFHEAL_BACKUP_TIME_BUDGET_SECONDS": "86400",
        # moto does not throttle: the sweep's own API rate is set out of the way (in AWS it is what
        # the account allows; see README § Configuration).
        "SELFHEAL_BACKUP_API_RATE": "1000",
        "SELFHEAL_BACKUP_API_BURST": "1000",
        **(extra or {}),
    }
    event = json.loads((ROOT / "events" / "schedule-backup-sweep.json").read_text())
    started = time.perf_counter()
    log = open(workdir / "selfheal.log", "w")
    proc = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT)
    memory = PeakMemory(proc.pid)
    try:
        kind, body, _sweep = api.deliver(event, timeout=3600)
        wall = time.perf_counter() - started
    finally:
        rss = memory.stop()  # the process is still alive: its exact high-water mark
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        api.close()
    if kind != "response":
        raise RuntimeError(f"backup-enforcer answered with an error (log: {workdir / 'selfheal.log'}): "
                           f"{json.dumps(body)[:1000]}")
    report = next((d for d in body.get("decisions", []) if d.get("action") == "compliance-report"), {})
    return wall, rss, report.get("details", {})


def run_c7n(moto, workdir, endpoint=None, policy_text=C7N_POLICY):
    policy = workdir / "c7n-policy.yml"
    policy.write_text(policy_text)
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint or moto.endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
               PYTHONPATH=str(ROOT / "scripts" / "bench" / "c7n_site"), BENCH_READ_TIMEOUT=str(ATTEMPT_TIMEOUT))
    custodian = ROOT / ".venv-bench" / "bin" / "custodian"
    argv = [str(custodian), "run", "--region", "us-east-1", "--cache-period", "0", "-s", str(workdir / "c7n-out"),
            str(policy)]
    log = open(workdir / "c7n.log", "w")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    memory = PeakMemory(proc.pid)
    # Not proc.wait(): reaping would remove /proc/<pid> before the sampler's last read.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    wall = time.perf_counter() - started
    rss = memory.stop()
    status = proc.wait()
    log.close()
    if status != 0:
        raise RuntimeError(f"custodian failed (status {status}); see {workdir / 'c7n.log'}")
    return wall, rss


HUB = "123456789012"
MEMBERS = ["111111111111", "222222222222", "333333333333", "444444444444"]
FLEET_REGIONS = ["us-east-1", "eu-west-1"]
# The role both tools assume in every account (moto: credentials from sts:AssumeRole for a role in
# account X act in X).
FLEET_ROLE = "selfheal-backup-enforcer"


def account_client(moto, service, account, region):
    if account == HUB:
        return boto3.client(service, endpoint_url=moto.endpoint, region_name=region, aws_access_key_id="bench",
                            aws_secret_access_key="bench", config=Config(read_timeout=1800, retries={"max_attempts": 1}))
    c = client(moto, "sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/{FLEET_ROLE}",
                                        RoleSessionName="bench-seed")["Credentials"]
    return boto3.client(service, endpoint_url=moto.endpoint, region_name=region, aws_access_key_id=c["AccessKeyId"],
                        aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"],
                        config=Config(read_timeout=1800, retries={"max_attempts": 1}))


def seed_fleet(moto, volumes):
    """Reset; the hub's ledger, topic (with a queue subscribed, to catch the summary) and sweep queues;
    `volumes` tagged volumes spread evenly over 5 accounts x 2 regions. Returns (topic, {place: ids})."""
    moto.reset()
    ddb = client(moto, "dynamodb")
    ddb.create_table(TableName="selfheal-ledger", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    topic = client(moto, "sns").create_topic(Name="selfheal-events")["TopicArn"]
    places = [(a, r) for a in [HUB, *MEMBERS] for r in FLEET_REGIONS]
    per_place = volumes // len(places)
    ids = {}

    def one(args):
        ec2, region, i = args
        return ec2.create_volume(AvailabilityZone=f"{region}a", Size=8, TagSpecifications=[{
            "ResourceType": "volume",
            "Tags": [{"Key": TAG, "Value": POLICY}, {"Key": OPT_IN, "Value": OPT_IN_VALUE},
                     {"Key": "Name", "Value": f"bench-{i}"}]}])["VolumeId"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for account, region in places:
            ec2 = account_client(moto, "ec2", account, region)
            ids[(account, region)] = set(pool.map(one, [(ec2, region, i) for i in range(per_place)]))
    return topic, ids


def fleet_sample(moto, ids, size):
    """Snapshots per volume for a random sample spread over the places."""
    out = {}
    per = max(1, size // len(ids))
    for (account, region), vols in ids.items():
        ec2 = account_client(moto, "ec2", account, region)
        sample = random.sample(sorted(vols), min(per, len(vols)))
        counts = {v: 0 for v in sample}
        for i in range(0, len(sample), 100):
            snaps = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": sample[i:i + 100]}])
            for s in snaps["Snapshots"]:
                counts[s["VolumeId"]] += 1
        out.update({f"{account}/{region}/{v}": n for v, n in counts.items()})
    return out


def selfheal_env(moto, address, topic, concurrency, extra):
    return {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": address,
        "AWS_LAMBDA_FUNCTION_NAME": "backup-enforcer",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "SELFHEAL_LEDGER_TABLE": "selfheal-ledger",
        "SELFHEAL_TOPIC_ARN": topic,
        "SELFHEAL_BACKUP_CONCURRENCY": str(concurrency),
        "SELFHEAL_AWS_ATTEMPT_TIMEOUT_SECONDS": str(ATTEMPT_TIMEOUT),
        "SELFHEAL_AWS_OPERATION_TIMEOUT_SECONDS": str(ATTEMPT_TIMEOUT),
        "SELFHEAL_BACKUP_API_RATE": "1000",
        "SELFHEAL_BACKUP_API_BURST": "1000",
        **extra,
    }


class Worker:
    """One function process under its own Runtime API stub: what one Lambda execution environment is."""

    def __init__(self, binary, env, log):
        self.api = RuntimeApi()
        self.proc = subprocess.Popen([str(binary)], env={**env, "AWS_LAMBDA_RUNTIME_API": self.api.address},
                                     stdout=log, stderr=subprocess.STDOUT)
        self.memory = PeakMemory(self.proc.pid, every=0.5)

    def stop(self):
        rss = self.memory.stop()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.api.close()
        return rss


def run_selfheal_fleet(moto, topic, args, workdir):
    """The fan-out as deployed: the schedule invokes the planner; the sweep queue's event source mapping
    (played here: batch size 1, at most --workers at once, partial batch responses honoured, a failure
    made visible again at once) invokes workers, each a process of the function. Timed from the
    schedule to the summary's publication."""
    sqs = client(moto, "sqs")
    sns = client(moto, "sns")
    dlq = sqs.create_queue(QueueName="selfheal-sweeps-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="selfheal-sweeps", Attributes={
        "VisibilityTimeout": "5400",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    inbox = sqs.create_queue(QueueName="bench-summary")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    extra = {
        "SELFHEAL_HOME_ACCOUNT": HUB,
        "SELFHEAL_ACCOUNTS": ",".join(MEMBERS),
        "SELFHEAL_MEMBER_ROLE_NAME": FLEET_ROLE,
        "SELFHEAL_BACKUP_REGIONS": ",".join(FLEET_REGIONS),
        "SELFHEAL_BACKUP_QUEUE_URL": queue,
        "SELFHEAL_BACKUP_SHARD_MAX_RECEIVES": "3",
        # As deployed: a worker stops starting work 840 s in (or 30 s before its deadline) and sends the
        # rest of its shard on.
        "SELFHEAL_BACKUP_TIME_BUDGET_SECONDS": "840",
    }
    log = open(workdir / "selfheal-fleet.log", "w")
    event = json.loads((ROOT / "events" / "schedule-backup-sweep.json").read_text())
    started = time.perf_counter()
    planner = Worker(args.binary, selfheal_env(moto, "", topic, args.concurrency, extra), log)
    kind, body, _ = planner.api.deliver(event, timeout=3600)
    peaks = [planner.stop()]
    if kind != "response":
        raise RuntimeError(f"the planner failed: {json.dumps(body)[:1000]}")
    summary, stop = {}, threading.Event()
    # The harness's own requests (Lambda's polling, deletes, the summary inbox): not selfheal's.
    invocations, retried, harness, lock = [0], [0], [0], threading.Lock()

    def count(n=1):
        with lock:
            harness[0] += n

    def esm(n):
        w = Worker(args.binary, selfheal_env(moto, "", topic, args.concurrency, extra), log)
        q = client(moto, "sqs")
        try:
            while not stop.is_set():
                got = q.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=1,
                                        AttributeNames=["All"]).get("Messages", [])
                count()
                if not got:
                    continue
                m = got[0]
                record = {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                          "attributes": m.get("Attributes", {}), "messageAttributes": {},
                          "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
                          "awsRegion": "us-east-1"}
                kind, answer, _ = w.api.deliver({"Records": [record]}, timeout=3600)
                failed = kind != "response" or any(
                    f.get("itemIdentifier") == m["MessageId"] for f in (answer or {}).get("batchItemFailures", []))
                with lock:
                    invocations[0] += 1
                    retried[0] += int(failed)
                if failed:
                    q.change_message_visibility(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                else:
                    q.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
                count()
        finally:
            with lock:
                peaks.append(w.stop())

    threads = [threading.Thread(target=esm, args=(i,), daemon=True) for i in range(args.workers)]
    for th in threads:
        th.start()
    while not summary and time.perf_counter() - started < 4 * 3600:
        count()
        for m in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            env = json.loads(json.loads(m["Body"])["Message"])
            if env.get("action") == "compliance-report":
                summary = env
    wall = time.perf_counter() - started
    stop.set()
    for th in threads:
        th.join()
    log.close()
    dead = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    count(1 + 7)  # the dead-letter count below; the three queues, their ARNs and the subscription above
    return dict(wall=wall, peaks=peaks, summary=summary, invocations=invocations[0], retried=retried[0],
                dead=int(dead["Attributes"]["ApproximateNumberOfMessages"]), harness=harness[0])


def run_c7n_org(moto, args, workdir):
    """c7n-org over the same 5 accounts and 2 regions, the same policy, --workers at once (C7N_ORG_PARALLEL)."""
    accounts = {"accounts": [{"account_id": a, "name": f"acct-{a}", "role": f"arn:aws:iam::{a}:role/{FLEET_ROLE}",
                              "regions": FLEET_REGIONS} for a in [HUB, *MEMBERS]]}
    (workdir / "accounts.yml").write_text(json.dumps(accounts))
    policy = workdir / "c7n-policy.yml"
    policy.write_text(C7N_POLICY)
    out = workdir / "c7n-org-out"
    env = dict(os.environ, AWS_ENDPOINT_URL=moto.endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
               PYTHONPATH=str(ROOT / "scripts" / "bench" / "c7n_site"), BENCH_READ_TIMEOUT=str(ATTEMPT_TIMEOUT),
               C7N_ORG_PARALLEL=str(args.workers))
    argv = [str(ROOT / ".venv-bench" / "bin" / "c7n-org"), "run", "-c", str(workdir / "accounts.yml"), "-s", str(out),
            "-u", str(policy), "--cache-period", "0", *sum([["--region", r] for r in FLEET_REGIONS], [])]
    log = open(workdir / "c7n-org.log", "w")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    peak_one, peak_sum = 0, 0
    while proc.poll() is None:
        total = 0
        for pid in tree(proc.pid):
            try:
                hwm, rss = peak_rss_kib(pid)
            except OSError:
                continue
            peak_one = max(peak_one, hwm)
            total += rss
        peak_sum = max(peak_sum, total)
        time.sleep(0.5)
    wall = time.perf_counter() - started
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"c7n-org failed (status {proc.returncode}); see {workdir / 'c7n-org.log'}")
    claimed = set()
    for f in out.glob("**/bench-ebs-snapshot/resources.json"):
        claimed |= {r["VolumeId"] for r in json.loads(f.read_text())}
    return dict(wall=wall, peak_one=peak_one, peak_sum=peak_sum, claimed=claimed)


def tree(pid):
    """A process and its descendants (from /proc)."""
    children = {}
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def fleet(moto, args, workdir, moto_version, c7n_version):
    volumes = args.fleet_volumes
    rows = {}
    for tool in ("selfheal", "c7n-org"):
        t0 = time.perf_counter()
        topic, ids = seed_fleet(moto, volumes)
        n = sum(len(v) for v in ids.values())
        print(f"== fleet/{tool}: seeded {n} volumes over {len(ids)} places in {time.perf_counter() - t0:.0f}s",
              file=sys.stderr)
        before = moto.requests()
        if tool == "selfheal":
            r = run_selfheal_fleet(moto, topic, args, workdir)
            details = r["summary"].get("details", {})
            claimed = details.get("byType", {}).get("ebs-volume", {}).get("fixed", 0)
            shards = details.get("shards", [])
            r.update(claimed=claimed, parts=sum(s.get("parts", 1) for s in shards), shards=len(shards),
                     peak_one=max(r["peaks"]) / 1024, created=details.get("snapshotsCreated"))
        else:
            r = run_c7n_org(moto, args, workdir)
            all_ids = set().union(*ids.values())
            r.update(claimed=len(r["claimed"] & all_ids), peak_one=r["peak_one"] / 1024, peak_sum=r["peak_sum"] / 1024)
        time.sleep(1)
        r["calls"] = moto.requests() - before - r.get("harness", 0)
        sample = fleet_sample(moto, ids, args.sample)
        wrong = {v: k for v, k in sample.items() if k != 1}
        r["sample"] = len(sample)
        rows[tool] = r
        print(f"== fleet/{tool}: {r['wall']:.1f}s, {r['calls']} requests, claimed {r['claimed']} of {n}; "
              f"{len(sample) - len(wrong)} of {len(sample)} sampled volumes have one snapshot", file=sys.stderr)
        (workdir / "results-fleet.json").write_text(json.dumps({k: {x: y for x, y in v.items() if x != "claimed" or
                                                                        isinstance(y, int)} for k, v in rows.items()},
                                                               indent=2, default=str))
        if r["claimed"] != n or wrong:
            raise SystemExit(f"fleet/{tool}: {r['claimed']} of {n} volumes; wrong: {dict(list(wrong.items())[:10])}")
    s, c = rows["selfheal"], rows["c7n-org"]
    per = lambda r: r["calls"] / volumes  # noqa: E731
    return [
        f"## {volumes} volumes over 5 accounts x 2 regions: selfheal fanned out vs c7n-org ({c7n_version})",
        "",
        f"One moto {moto_version} server, reset and seeded alike before each tool ({volumes // 10} volumes in each "
        "account and region); both assume a role in each member account. selfheal: the scheduled event to the "
        f"planner, then {args.workers} workers at most (the queue's MaximumConcurrency), each a process of the "
        "function taking one shard (an account in a region) from SQS, with the deployed time budget (840 s); "
        f"timed to the summary's publication. c7n-org: `C7N_ORG_PARALLEL={args.workers}`, both regions.",
        "",
        "| | selfheal | c7n-org | selfheal / c7n-org |",
        "|---|---:|---:|---:|",
        f"| wall time | {s['wall']:.1f} s | {c['wall']:.1f} s | {s['wall'] / c['wall']:.2f}x |",
        f"| peak memory, one process (VmHWM) | {s['peak_one']:.1f} MiB | {c['peak_one']:.1f} MiB | "
        f"{s['peak_one'] / c['peak_one']:.2f}x |",
        f"| API requests | {s['calls']} | {c['calls']} | {s['calls'] / c['calls']:.2f}x |",
        f"| requests per volume | {per(s):.2f} | {per(c):.2f} | |",
        "",
        f"selfheal: {s['shards']} shards in {s['parts']} part(s) ({s['parts'] - s['shards']} sent on because a "
        f"worker's 840 s budget ran out), {s['invocations']} worker invocations, {s['retried']} reported a batch "
        f"item failure, {s['dead']} dead-lettered ({s['harness']} requests of the harness playing Lambda's "
        "event source mapping are not counted); every worker's peak memory: "
        f"{', '.join(f'{p / 1024:.1f}' for p in s['peaks'])} MiB. c7n-org's processes together peaked at "
        f"{c['peak_sum']:.1f} MiB (summed VmRSS).",
        "",
    ]


# --- DynamoDB tables and S3 buckets (issue #29): one setting each, against Custodian's one action ---

C7N_TABLES_POLICY = f"""\
policies:
  - name: bench-dynamodb-pitr
    resource: aws.dynamodb-table
    filters:
      - "tag:{TAG}": {POLICY}
      - "tag:{OPT_IN}": "{OPT_IN_VALUE}"
    actions:
      - type: set-continuous-backup
"""
C7N_BUCKETS_POLICY = f"""\
policies:
  - name: bench-s3-versioning
    resource: aws.s3
    filters:
      - "tag:{TAG}": {POLICY}
      - "tag:{OPT_IN}": "{OPT_IN_VALUE}"
    actions:
      - type: toggle-versioning
        enabled: true
"""
# The suite's S3 lifecycle rule as selfheal writes it for the gold policy (shared/src/backup/buckets.rs:
# noncurrent versions expire after the retention, 35 days), for the like-for-like seeding.
SUITE_LIFECYCLE_RULE = {"ID": "selfheal-noncurrent-expiration", "Status": "Enabled", "Filter": {"Prefix": ""},
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 35}}
# Custodian's own idempotent form of the same policy (its documentation's example for
# set-continuous-backup): it reads each table's PITR (DescribeContinuousBackups) and acts only on
# those without it, as selfheal does. Run as a third tool in the tables' like-for-like pair.
C7N_TABLES_CHECKED_POLICY = C7N_TABLES_POLICY.replace("""    actions:""", """      - type: continuous-backup
        key: PointInTimeRecoveryDescription.PointInTimeRecoveryStatus
        value: DISABLED
    actions:""")
DATASTORES = {
    # scenario: (selfheal's report kind, Custodian's policy, its policy name, the resources.json key,
    #            selfheal's settings: only this kind of datastore, no RDS)
    "tables": ("dynamodb-table", C7N_TABLES_POLICY, "bench-dynamodb-pitr", "TableName",
               {"SELFHEAL_BACKUP_S3": "false", "SELFHEAL_BACKUP_RDS": "false"}),
    "buckets": ("s3-bucket", C7N_BUCKETS_POLICY, "bench-s3-versioning", "Name",
                {"SELFHEAL_BACKUP_DYNAMODB": "false", "SELFHEAL_BACKUP_RDS": "false"}),
}
BENCH_TAGS = [{"Key": TAG, "Value": POLICY}, {"Key": OPT_IN, "Value": OPT_IN_VALUE}]


def seed_tables(moto, n, protected=False):
    """Reset; the suite's ledger and topic; `n` tagged on-demand tables without point-in-time recovery
    (`protected`: with deletion protection already on)."""
    topic = seed_suite(moto)
    ddb = client(moto, "dynamodb")

    def one(i):
        name = f"bench-table-{i:05d}"
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         Tags=BENCH_TAGS + [{"Key": "Name", "Value": name}], DeletionProtectionEnabled=protected)
        return name

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return topic, set(pool.map(one, range(n)))


def seed_buckets(moto, n, lifecycle=False):
    """Reset; the suite's ledger and topic; `n` tagged buckets in us-east-1 without versioning
    (`lifecycle`: with the suite's noncurrent-expiration rule already in place)."""
    topic = seed_suite(moto)
    s3 = client(moto, "s3")

    def one(i):
        name = f"bench-bucket-{i:05d}"
        s3.create_bucket(Bucket=name)
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": BENCH_TAGS + [{"Key": "Name", "Value": name}]})
        if lifecycle:
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [SUITE_LIFECYCLE_RULE]})
        return name

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return topic, set(pool.map(one, range(n)))


def check_tables(moto, names):
    """Every seeded table's point-in-time recovery (status, recovery period) and deletion protection."""
    ddb = client(moto, "dynamodb")

    def one(name):
        pitr = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"][
            "PointInTimeRecoveryDescription"]
        protected = ddb.describe_table(TableName=name)["Table"].get("DeletionProtectionEnabled", False)
        return name, (pitr["PointInTimeRecoveryStatus"], pitr.get("RecoveryPeriodInDays"), protected)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, sorted(names)))


def check_buckets(moto, names):
    """Every seeded bucket's versioning status and lifecycle rule ids."""
    s3 = client(moto, "s3")

    def one(name):
        status = s3.get_bucket_versioning(Bucket=name).get("Status", "never")
        try:
            rules = tuple(r.get("ID", "") for r in s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"])
        except s3.exceptions.ClientError:
            rules = ()
        return name, (status, rules)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, sorted(names)))


def log_operations(moto, skip):
    """What moto answered after its first `skip` requests, by method and S3 subresource (the query's
    first key): DynamoDB's operations all log as `POST /`."""
    moto.log.flush()
    ops, n = {}, 0
    with open(moto.log_path) as f:
        for line in f:
            m = REQUEST_LINE.search(ANSI.sub("", line))
            if not m or m.group(2).startswith("/moto-api"):
                continue
            n += 1
            if n <= skip:
                continue
            path, _, query = m.group(2).partition("?")
            path = path.rstrip("/") or "/"  # the Rust SDK writes `/<bucket>/?versioning`, boto3 `/<bucket>?versioning`
            sub = query.split("&")[0].split("=")[0]
            shape = "/" if path == "/" else ("/<bucket>" if path.count("/") == 1 else "/<bucket>/<key>")
            key = f"{m.group(1)} {shape}" + (f"?{sub}" if sub else "")
            ops[key] = ops.get(key, 0) + 1
    return ops


def datastore_pair(moto, args, scenario, n, workdir, like_for_like=False):
    """Both tools over the same seeded tables or buckets. Returns {tool: row}."""
    kind, c7n_policy, c7n_name, c7n_key, settings = DATASTORES[scenario]
    label = f"{scenario}{'-like' if like_for_like else ''}"
    rows = {}
    tools = ("selfheal", "c7n", "c7n-checked") if like_for_like and scenario == "tables" else ("selfheal", "c7n")
    for tool in tools:
        t0 = time.perf_counter()
        if scenario == "tables":
            topic, names = seed_tables(moto, n, protected=like_for_like)
        else:
            topic, names = seed_buckets(moto, n, lifecycle=like_for_like)
        print(f"== {label}/{tool}: seeded {n} {scenario} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        before = moto.requests()
        proxy = None
        if args.by_operation:
            # Counts by operation (DynamoDB's all log as `POST /`); the hop costs time: not for timing.
            from latency_proxy import Proxy  # noqa: E402
            proxy = Proxy(moto.endpoint, latency={"default": {}})
        endpoint = proxy.endpoint if proxy else None
        try:
            if tool == "selfheal":
                wall, rss, details = run_selfheal(moto, topic, args.binary, args.concurrency, workdir, endpoint,
                                                  extra=settings)
            else:
                policy_text = C7N_TABLES_CHECKED_POLICY if tool == "c7n-checked" else c7n_policy
                wall, rss = run_c7n(moto, workdir, endpoint, policy_text=policy_text)
        finally:
            by_operation = proxy.snapshot() if proxy else {}
            if proxy:
                proxy.close()
        if tool == "selfheal":
            claimed = details.get("byType", {}).get(kind, {}).get("fixed", 0)
        else:
            details = {}
            acted = json.loads((workdir / "c7n-out" / c7n_name / "resources.json").read_text())
            claimed = len({r[c7n_key] for r in acted} & names)
        time.sleep(1)  # the server logs a request once it has answered it
        calls = moto.requests() - before
        ops = log_operations(moto, before) if scenario == "buckets" else by_operation
        state = check_tables(moto, names) if scenario == "tables" else check_buckets(moto, names)
        if scenario == "tables":
            good = sum(1 for s, _, _ in state.values() if s == "ENABLED")
            periods = sorted({str(p) for s, p, _ in state.values()})
            protected = sum(1 for *_, p in state.values() if p)
            extra = dict(periods=periods, protected=protected)
        else:
            good = sum(1 for s, _ in state.values() if s == "Enabled")
            ruled = sum(1 for _, r in state.values() if "selfheal-noncurrent-expiration" in r)
            extra = dict(lifecycle=ruled)
        rows[tool] = dict(wall=wall, rss=rss / 1024, calls=calls, claimed=claimed, good=good, ops=ops,
                          details=details, **extra)
        print(f"== {label}/{tool}: {wall:.1f}s, {rss / 1024:.1f} MiB, {calls} requests ({calls / n:.2f} per "
              f"resource), says it fixed {claimed}; {good} of {n} checked compliant; {extra}; {ops}", file=sys.stderr)
        (workdir / f"results-{label}.json").write_text(json.dumps(rows, indent=2))
        if claimed != n or good != n:
            raise SystemExit(f"{label}/{tool}: fixed {claimed} of {n}, {good} of {n} checked compliant")
    return rows


def datastore_report(rows, scenario, n, like_for_like, moto_version, c7n_version):
    s, c = rows["selfheal"], rows["c7n"]
    what = {"tables": "tagged DynamoDB tables, point-in-time recovery", "buckets": "tagged S3 buckets, versioning"}
    seeded = {"tables": ("with deletion protection already on" if like_for_like else "none protected"),
              "buckets": ("with the suite's lifecycle rule already in place" if like_for_like else "no lifecycle rule")}
    if scenario == "tables":
        after = (f"After selfheal every table had point-in-time recovery ENABLED (recovery periods seen: "
                 f"{', '.join(s['periods'])} days) and {s['protected']} of {n} deletion protection; after Custodian "
                 f"every table had it ENABLED (periods seen: {', '.join(c['periods'])} days), {c['protected']} protected.")
        if s["ops"]:
            after += f" selfheal's requests: {json.dumps(s['ops'])}; Custodian's: {json.dumps(c['ops'])}."
    else:
        after = (f"After selfheal every bucket had versioning Enabled and {s['lifecycle']} of {n} the suite's "
                 f"lifecycle rule; after Custodian every bucket had versioning Enabled, {c['lifecycle']} the rule. "
                 f"selfheal's requests: {json.dumps(s['ops'])}; Custodian's: {json.dumps(c['ops'])}.")
    return [
        f"## {scenario}{' (like for like)' if like_for_like else ''}: {n} {what[scenario]}: selfheal vs "
        f"Cloud Custodian {c7n_version}",
        "",
        f"One moto {moto_version} server, reset and seeded alike before each tool ({seeded[scenario]}), on this "
        f"machine ({os.cpu_count()} CPUs). Each tool said it fixed every one of the {n}; every one was read back.",
        "",
        *table(s, c, n, unit=scenario[:-1]),
        "",
        after + f" selfheal's report: {json.dumps(s['details'].get('byType', {}))}, inventory requests "
        f"{json.dumps(s['details'].get('inventoryRequests', {}))}.",
        "",
        *([] if "c7n-checked" not in rows else [
            "Custodian's idempotent form (a `continuous-backup` filter on PITR DISABLED before the action, as in "
            "its documentation), same seeding:",
            "",
            *table(s, rows["c7n-checked"], n, peer="checked Custodian", unit="table"),
            "",
            *([f"Its requests: {json.dumps(rows['c7n-checked']['ops'])}.", ""] if rows["c7n-checked"]["ops"] else []),
        ]),
    ]


def pair(moto, args, volumes, workdir, endpoint=None, label="single"):
    """Both tools over the same seeded account, one after the other, through `endpoint` (moto itself,
    or the latency model in front of it). Returns {tool: row}."""
    rows = {}
    for tool in ("selfheal", "c7n"):
        t0 = time.perf_counter()
        topic, volume_ids = seed(moto, volumes)
        print(f"== {label}/{tool}: seeded {volumes} volumes in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        before = moto.requests()
        if tool == "selfheal":
            wall, rss, details = run_selfheal(moto, topic, args.binary, args.concurrency, workdir, endpoint)
        else:
            wall, rss = run_c7n(moto, workdir, endpoint)
            details = {}
        time.sleep(1)  # the server logs a request once it has answered it
        calls = moto.requests() - before
        if tool == "selfheal":
            ebs = details.get("byType", {}).get("ebs-volume", {})
            claimed = ebs.get("fixed", 0) if details.get("snapshotsCreated") == volumes else 0
        else:
            claimed = len(c7n_snapshotted(workdir) & volume_ids)
        rows[tool] = dict(wall=wall, rss=rss / 1024, calls=calls, claimed=claimed, details=details)
        print(f"== {label}/{tool}: {wall:.1f}s, {rss / 1024:.1f} MiB, {calls} requests, "
              f"says it snapshotted {claimed} volumes", file=sys.stderr)
        (workdir / f"results-{label}.json").write_text(json.dumps(rows, indent=2))
        sample = sample_snapshots(moto, volume_ids, args.sample)
        wrong = {v: n for v, n in sample.items() if n != 1}
        rows[tool]["sample"] = len(sample)
        print(f"== {label}/{tool}: {len(sample) - len(wrong)} of {len(sample)} sampled volumes have exactly one "
              "snapshot", file=sys.stderr)
        if claimed != volumes or wrong:
            raise SystemExit(f"{tool} snapshotted {claimed} of {volumes} volumes; sampled volumes with "
                             f"other than one snapshot: {dict(list(wrong.items())[:10])}")
    return rows


def table(s, c, volumes, peer="Cloud Custodian", unit="volume"):
    per = lambda r: r["calls"] / volumes  # noqa: E731
    return [
        f"| | selfheal | {peer} | selfheal / {peer.split()[-1]} |",
        "|---|---:|---:|---:|",
        f"| wall time | {s['wall']:.1f} s | {c['wall']:.1f} s | {s['wall'] / c['wall']:.2f}x |",
        f"| peak memory (VmHWM) | {s['rss']:.1f} MiB | {c['rss']:.1f} MiB | {s['rss'] / c['rss']:.2f}x |",
        f"| API requests | {s['calls']} | {c['calls']} | {s['calls'] / c['calls']:.2f}x |",
        f"| requests per {unit} | {per(s):.2f} | {per(c):.2f} | {per(s) / per(c):.2f}x |",
    ]


def main():
    ap = argparse.ArgumentParser(description="backup-enforcer vs Cloud Custodian, same moto server, same run")
    ap.add_argument("--volumes", type=int, default=10_000)
    ap.add_argument("--binary", required=True, help="the release backup-enforcer binary")
    ap.add_argument("--concurrency", type=int, default=8, help="SELFHEAL_BACKUP_CONCURRENCY (default: the default)")
    ap.add_argument("--out", help="also write the report (Markdown) to this file")
    ap.add_argument("--sample", type=int, default=300, help="volumes whose snapshots are checked through the API")
    ap.add_argument("--scenario", action="append", choices=["single", "latency", "fleet", "tables", "buckets"],
                    help="single (default): one account on moto; latency: the same through the latency model "
                         "(scripts/bench/latency_proxy.py); fleet: 5 accounts x 2 regions, fanned out, vs c7n-org; "
                         "tables: point-in-time recovery on tagged DynamoDB tables vs c7n set-continuous-backup; "
                         "buckets: versioning on tagged S3 buckets vs c7n toggle-versioning")
    ap.add_argument("--tables", type=int, default=1000, help="DynamoDB tables for the tables scenario")
    ap.add_argument("--buckets", type=int, default=1000, help="S3 buckets for the buckets scenario")
    ap.add_argument("--by-operation", action="store_true",
                    help="tables and buckets: count requests by operation through a zero-latency proxy (slower: "
                         "the wall times are not comparable)")
    ap.add_argument("--like-for-like", action="store_true",
                    help="tables and buckets: also a second pair seeded with selfheal's extra work already done "
                         "(deletion protection on; the suite's lifecycle rule in place), so its only write is "
                         "Custodian's one")
    ap.add_argument("--latency-volumes", type=int, help="volumes for the latency scenario (default: --volumes)")
    ap.add_argument("--fleet-volumes", type=int, default=50_000, help="volumes over the fleet's 10 places")
    ap.add_argument("--workers", type=int, default=5,
                    help="fleet: sweep workers at once (the queue's MaximumConcurrency) and c7n-org's -w")
    args = ap.parse_args()
    scenarios = args.scenario or ["single"]

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="selfheal-bench-backup."))
    print(f"== logs in {workdir}", file=sys.stderr)
    moto = Moto(workdir)
    lines = []
    moto_version = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                                   "import moto; print(moto.__version__)"], capture_output=True, text=True).stdout.strip()
    c7n_version = subprocess.run([str(ROOT / ".venv-bench" / "bin" / "custodian"), "version"],
                                 capture_output=True, text=True).stdout.strip()
    try:
        if "single" in scenarios:
            rows = pair(moto, args, args.volumes, workdir)
            listing, tags_listing, listed = time_one_listing(moto)
            s, c = rows["selfheal"], rows["c7n"]
            lines += [
                f"## {args.volumes} volumes in one account: selfheal vs Cloud Custodian {c7n_version}",
                "",
                f"One moto {moto_version} server, reset and seeded alike before each tool, on this machine "
                f"({os.cpu_count()} CPUs). Each tool reported a snapshot of every one of the {args.volumes} volumes, "
                f"and {s['sample']} randomly sampled volumes had exactly one snapshot after each tool.",
                "",
                *table(s, c, args.volumes),
                "",
                f"selfheal concurrency {args.concurrency}; its report: {json.dumps(s['details'].get('byType', {}))}, "
                f"{s['details'].get('auditRequests')} BatchWriteItem request(s) for "
                f"{s['details'].get('audited')} audit records. Asked alone at the end, moto answers Custodian's "
                f"`DescribeVolumes` of all {listed} volumes in {listing:.1f} s and selfheal's `DescribeTags` of "
                f"their policy and opt-in tags in {tags_listing:.1f} s.",
                "",
            ]
        if "latency" in scenarios:
            sys.path.insert(0, str(ROOT / "scripts" / "bench"))
            from latency_proxy import DEFAULT_LATENCY_MS, Proxy  # noqa: E402
            proxy = Proxy(moto.endpoint)
            volumes = args.latency_volumes or args.volumes
            try:
                rows = pair(moto, args, volumes, workdir, endpoint=proxy.endpoint, label="latency")
            finally:
                proxy.close()
            s, c = rows["selfheal"], rows["c7n"]
            lines += [
                f"## {volumes} volumes through the latency model: selfheal vs Cloud Custodian {c7n_version}",
                "",
                "Both tools through `scripts/bench/latency_proxy.py` in front of the same moto server: each request "
                "is held for its operation's latency in its own thread (so held requests overlap, as AWS serves "
                "them), then answered by moto, whose own time comes on top. Latencies (ms, per request): "
                f"`{json.dumps(DEFAULT_LATENCY_MS)}` (where they come from: the proxy's docstring and README).",
                "",
                *table(s, c, volumes),
                "",
            ]
        if "fleet" in scenarios:
            lines += fleet(moto, args, workdir, moto_version, c7n_version)
        for scenario in ("tables", "buckets"):
            if scenario not in scenarios:
                continue
            n = args.tables if scenario == "tables" else args.buckets
            for like in (False, True) if args.like_for_like else (False,):
                rows = datastore_pair(moto, args, scenario, n, workdir, like_for_like=like)
                lines += datastore_report(rows, scenario, n, like, moto_version, c7n_version)
    finally:
        moto.close()

    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        pathlib.Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
