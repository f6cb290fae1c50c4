"""The authorization matrix's rows for the policy layers: one role with the data-processor's
baseline policy, seen plain, through a permissions boundary, through a session policy, and
against a bucket's policy. Each subject is a session of that role; every probe is harmless
(reads, or a publish with an event type no queue subscribes to)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.aws import Clients, session_from_keys
from core.principals import Principal
from emulation.identities import user_arn
from tests.integration.conftest import RunningWorld
from workload.spec import METRICS_NAMESPACE, spec_for

FUNCTION = "data-processor"
PROBE_EVENT: dict[str, Any] = {
    "event_type": {"DataType": "String", "StringValue": "authorization-probe"}
}
Call = Callable[[Clients], Any]


@dataclass(frozen=True)
class LayerProbe:
    subject: str
    what: str
    call: Call
    allowed: bool
    clients: Clients


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def stage(world: RunningWorld, admin: Clients) -> Iterator[list[LayerProbe]]:
    """Makes the roles (one bounded), a bucket with a policy and three sessions; yields their
    probes; deletes everything after."""
    settings = world.settings
    iam, s3, sts = admin("iam"), admin("s3"), admin("sts")
    spec = spec_for(FUNCTION, settings)
    tag = uuid.uuid4().hex[:8]
    bucket = f"matrix-layers-{tag}"
    plain_role, bounded_role = f"matrix-layers-{tag}", f"matrix-layers-bounded-{tag}"
    own_key = f"{spec.prefix}matrix-probe-{tag}.json"
    trust = {
        "Effect": "Allow",
        "Principal": {"AWS": user_arn(Principal.ADMIN, settings)},
        "Action": "sts:AssumeRole",
    }
    reads_data = iam.create_policy(
        PolicyName=f"matrix-boundary-{tag}",
        PolicyDocument=_doc(
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{spec.bucket}/*",
            }
        ),
    )["Policy"]["Arn"]
    roles = {}
    for role_name, boundary in ((plain_role, None), (bounded_role, reads_data)):
        bounded = {"PermissionsBoundary": boundary} if boundary else {}
        roles[role_name] = iam.create_role(
            RoleName=role_name, AssumeRolePolicyDocument=_doc(trust), **bounded
        )["Role"]["Arn"]
        iam.put_role_policy(
            RoleName=role_name,
            PolicyName="baseline",
            PolicyDocument=json.dumps(spec.baseline_policy()),
        )
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": settings.region}
    )
    for key in ("shared/probe.json", "secret/probe.json"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    s3.put_object(Bucket=spec.bucket, Key=own_key, Body=b"{}")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_doc(
            {
                "Effect": "Allow",
                "Principal": {"AWS": list(roles.values())},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": list(roles.values())},
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/secret/*",
            },
        ),
    )

    def session(role_name: str, **narrowing: Any) -> Clients:
        keys = sts.assume_role(RoleArn=roles[role_name], RoleSessionName="matrix", **narrowing)
        signed = {
            k: str(keys["Credentials"][k])
            for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")
        }
        return Clients(Principal.ADMIN, settings, session_from_keys(signed, settings))

    def get(in_bucket: str, key: str) -> Call:
        return lambda c: c("s3").get_object(Bucket=in_bucket, Key=key)

    def publish_alert(c: Clients) -> Any:
        return c("sns").publish(
            TopicArn=spec.alerts_topic_arn, Message="{}", MessageAttributes=PROBE_EVENT
        )

    def metric(namespace: str) -> Call:
        return lambda c: c("cloudwatch").put_metric_data(
            Namespace=namespace, MetricData=[{"MetricName": "AuthorizationProbe", "Value": 0.0}]
        )

    plain = session(plain_role)
    only_publish = session(
        plain_role, Policy=_doc({"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"})
    )
    bounded = session(bounded_role)
    name = "data-processor-role"
    probes = [
        LayerProbe(name, "GetObject own input", get(spec.bucket, own_key), True, plain),
        LayerProbe(name, "Publish incident-alerts", publish_alert, True, plain),
        LayerProbe(
            name, f"PutMetricData {METRICS_NAMESPACE}", metric(METRICS_NAMESPACE), True, plain
        ),
        LayerProbe(
            name,
            "PutMetricData AWS/Lambda (namespace condition)",
            metric("AWS/Lambda"),
            False,
            plain,
        ),
        LayerProbe(
            name,
            "GetObject, granted by a bucket policy",
            get(bucket, "shared/probe.json"),
            True,
            plain,
        ),
        LayerProbe(
            name,
            "GetObject, denied by a bucket policy",
            get(bucket, "secret/probe.json"),
            False,
            plain,
        ),
        # A key that does not exist: AccessDenied without s3:ListBucket, NoSuchKey with it.
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
        LayerProbe(
            name,
            "GetObject a missing key, no s3:ListBucket",
            get(spec.bucket, f"{spec.prefix}no-such-key-{tag}"),
            False,
            plain,
        ),
        LayerProbe(
            name,
            "GetObject a missing key, ListBucket from the bucket policy",
            get(bucket, "shared/no-such-key.json"),
            True,
            plain,
        ),
        LayerProbe(
            f"{name}/bounded",
            "GetObject own input (boundary allows)",
            get(spec.bucket, own_key),
            True,
            bounded,
        ),
        LayerProbe(
            f"{name}/bounded",
            "Publish incident-alerts (boundary does not)",
            publish_alert,
            False,
            bounded,
        ),
        LayerProbe(
            f"{name}/bounded",
            "GetObject, bucket grant beyond the boundary",
            get(bucket, "shared/probe.json"),
            False,
            bounded,
        ),
        LayerProbe(
            f"{name}/session",
            "Publish incident-alerts (session policy allows)",
            publish_alert,
            True,
            only_publish,
        ),
        LayerProbe(
            f"{name}/session",
            "GetObject own input (session policy does not)",
            get(spec.bucket, own_key),
            False,
            only_publish,
        ),
    ]
    try:
        yield probes
    finally:
        for role_name in roles:
            iam.delete_role_policy(RoleName=role_name, PolicyName="baseline")
            iam.delete_role(RoleName=role_name)
        iam.delete_policy(PolicyArn=reads_data)
        s3.delete_object(Bucket=spec.bucket, Key=own_key)
        for key in ("shared/probe.json", "secret/probe.json"):
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket_policy(Bucket=bucket)
        s3.delete_bucket(Bucket=bucket)
