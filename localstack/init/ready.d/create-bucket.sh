#!/usr/bin/env bash
# Create the bucket vactor_cloud uses by default (s3://$VACTOR_BUCKET), idempotently.
#
# Inside the LocalStack container it runs as a "ready" hook (docker-compose.yml
# mounts this directory at /etc/localstack/init/ready.d) and uses `awslocal`.
# On the host, after localstack/start-host.sh:
#
#   AWS_ENDPOINT_URL=http://127.0.0.1:4566 bash localstack/init/ready.d/create-bucket.sh
set -euo pipefail

BUCKET="${VACTOR_BUCKET:-vactor}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

if command -v awslocal >/dev/null 2>&1; then
  s3api=(awslocal s3api)
elif command -v aws >/dev/null 2>&1; then
  s3api=(aws --endpoint-url "${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}" s3api)
else
  # No AWS CLI: boto3 honours AWS_ENDPOINT_URL and the credentials exported above.
  exec "${PYTHON:-python3}" - "$BUCKET" <<'PY'
import sys

import boto3
from botocore.exceptions import ClientError

client = boto3.client("s3")
try:
    client.head_bucket(Bucket=sys.argv[1])
    print(f"create-bucket: s3://{sys.argv[1]} already exists")
except ClientError:
    client.create_bucket(Bucket=sys.argv[1])
    print(f"create-bucket: created s3://{sys.argv[1]}")
PY
fi

if "${s3api[@]}" head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
  echo "create-bucket: s3://$BUCKET already exists"
else
  "${s3api[@]}" create-bucket --bucket "$BUCKET" >/dev/null
  echo "create-bucket: created s3://$BUCKET"
fi
