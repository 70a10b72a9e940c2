"""Sets up moto (started with INITIAL_NO_AUTH_ACTION_COUNT=4, so IAM is enforced after four
requests) for the test of deploy/iam/ocrd-policy.json, and tries what the policy must refuse.

Usage: iam_on_moto.py ENDPOINT POLICY_FILE BUCKET. Prints one JSON object: the bucket, the KMS
key's ARN, the access key of an IAM user holding only the policy, and, for each refused
action, the error code moto answered (or "allowed").
"""
import json
import sys

import boto3
import botocore.exceptions

endpoint, policy_path, bucket = sys.argv[1:4]


def client(service, key):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


# The four unauthenticated requests make an administrator; everything after is checked.
bootstrap = client("iam", {"AccessKeyId": "bootstrap", "SecretAccessKey": "bootstrap"})
bootstrap.create_user(UserName="admin")
everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
arn = bootstrap.create_policy(PolicyName="admin", PolicyDocument=json.dumps(everything))["Policy"]["Arn"]
bootstrap.attach_user_policy(UserName="admin", PolicyArn=arn)
admin = bootstrap.create_access_key(UserName="admin")["AccessKey"]

iam, s3, kms = (client(s, admin) for s in ("iam", "s3", "kms"))
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="elsewhere/kept", Body=b"not ocrd's")
key_arn = kms.create_key(Description="ocrd")["KeyMetadata"]["Arn"]
with open(policy_path) as f:
    policy = json.loads(f.read().replace("OCRD_BUCKET", bucket).replace("OCRD_KMS_KEY_ARN", key_arn))
# moto authorises every KMS action against the resource "*" (its KMS responses have no
# _determine_resource), so a statement scoped to the key's ARN never matches there. For moto
# only, the KMS statement keeps its actions and loses its scope: the actions are checked here,
# the key scope only by AWS.
for statement in policy["Statement"]:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    if all(a.startswith("kms:") for a in actions):
        statement["Resource"] = "*"
document = json.dumps(policy)
iam.create_user(UserName="ocrd")
arn = iam.create_policy(PolicyName="ocrd", PolicyDocument=document)["Policy"]["Arn"]
iam.attach_user_policy(UserName="ocrd", PolicyArn=arn)
ocrd = iam.create_access_key(UserName="ocrd")["AccessKey"]

as_ocrd = {s: client(s, ocrd) for s in ("s3", "kms", "iam")}
refused = {
    "put under another prefix": lambda: as_ocrd["s3"].put_object(Bucket=bucket, Key="elsewhere/x", Body=b"x"),
    "read under another prefix": lambda: as_ocrd["s3"].get_object(Bucket=bucket, Key="elsewhere/kept"),
    "delete the bucket": lambda: as_ocrd["s3"].delete_bucket(Bucket=bucket),
    "change the bucket's policy": lambda: as_ocrd["s3"].put_bucket_policy(Bucket=bucket, Policy=json.dumps(everything)),
    "create a bucket": lambda: as_ocrd["s3"].create_bucket(Bucket=bucket + "-other"),
    "create a KMS key": lambda: as_ocrd["kms"].create_key(Description="intruder"),
    "disable the key": lambda: as_ocrd["kms"].disable_key(KeyId=key_arn),
    "schedule the key's deletion": lambda: as_ocrd["kms"].schedule_key_deletion(KeyId=key_arn),
    "create an IAM user": lambda: as_ocrd["iam"].create_user(UserName="intruder"),
}
answers = {}
for what, attempt in refused.items():
    try:
        attempt()
        answers[what] = "allowed"
    except botocore.exceptions.ClientError as e:
        answers[what] = e.response["Error"]["Code"]
allowed = {
    "put under uploads/": lambda: as_ocrd["s3"].put_object(Bucket=bucket, Key="uploads/probe", Body=b"x"),
    "generate a data key with the key": lambda: as_ocrd["kms"].generate_data_key(KeyId=key_arn, KeySpec="AES_256"),
}
for what, attempt in allowed.items():
    try:
        attempt()
        answers[what] = "allowed"
    except botocore.exceptions.ClientError as e:
        answers[what] = e.response["Error"]["Code"]
as_ocrd["s3"].delete_object(Bucket=bucket, Key="uploads/probe")

print(json.dumps({
    "bucket": bucket,
    "kms_key_arn": key_arn,
    "access_key_id": ocrd["AccessKeyId"],
    "secret_access_key": ocrd["SecretAccessKey"],
    "answers": answers,
}))
