"""Loaded into Cloud Custodian's Python by the backup benchmark (PYTHONPATH): raises botocore's default
read timeout to BENCH_READ_TIMEOUT seconds, as the benchmark raises selfheal's attempt timeout.

moto answers one DescribeVolumes of 10,000 tagged volumes in minutes (it ignores MaxResults and scans
every tag for each volume), past botocore's 60 s default, and Custodian has no option to change it.
"""

import os

try:
    from botocore.config import Config

    Config.OPTION_DEFAULTS["read_timeout"] = int(os.environ.get("BENCH_READ_TIMEOUT", "60"))
except ImportError:  # not a Python with botocore: nothing to change
    pass
