"""Loaded into Cloud Custodian's Python by the backup benchmark (PYTHONPATH): raises botocore's default
read timeout to BENCH_READ_TIMEOUT seconds, as the benchmark raises selfheal's attempt timeout.

moto answers one DescribeVolumes of 10,000 tagged volumes in minutes (it ignores MaxResults and scans
every tag for each volume), past botocore's 60 s default, and Custodian has no option to change it.

It also makes moto answer Custodian's tag lookups by ARN list whole, as AWS does (below).
"""

import os

try:
    from botocore.config import Config

    Config.OPTION_DEFAULTS["read_timeout"] = int(os.environ.get("BENCH_READ_TIMEOUT", "60"))
except ImportError:  # not a Python with botocore: nothing to change
    pass


# moto answers GetResources with a ResourceARNList (Custodian's tag augment of DynamoDB tables and
# other "universal_taggable" resources: up to 100 ARNs a request, one request, no pagination) a page
# at a time, 50 resources or 100 tags by default; AWS takes no pagination parameter with an ARN list
# and answers all of them at once ("You can't specify both this parameter and any of the pagination
# parameters", the API reference of ResourceARNList). Without this Custodian sees the tags of only the first 33 of every
# 100 tables (3 tags each) on moto and leaves the rest alone. Asking moto for its largest page (100
# resources, 500 tags) gives Custodian AWS's answer, in the same one request per 100 ARNs.
def _whole_arn_list(params, **_):
    if "ResourceARNList" in params:
        params.setdefault("ResourcesPerPage", 100)
        params.setdefault("TagsPerPage", 500)


try:
    import botocore.session

    _create_client = botocore.session.Session.create_client

    def _create_client_whole_arn_list(self, *args, **kwargs):
        client = _create_client(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build.resource-groups-tagging-api.GetResources",
                                    _whole_arn_list)
        return client

    botocore.session.Session.create_client = _create_client_whole_arn_list
except ImportError:  # not a Python with botocore: nothing to change
    pass
