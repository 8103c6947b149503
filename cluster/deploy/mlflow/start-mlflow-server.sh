#!/usr/bin/env bash
# An MLflow tracking server for a team: PostgreSQL backend store, S3-compatible artifact
# store (AWS S3, MinIO, GCS interop, Ceph), HTTP basic authentication.
#
# Every credential comes from the environment (or a secret store that fills it); nothing
# secret is written into the repository. Required:
#   MLFLOW_DB_URI            postgresql://USER:PASSWORD@HOST:5432/mlflow   (from your secret store)
#   MLFLOW_ARTIFACTS         s3://bucket/prefix
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   (or an instance role); MLFLOW_S3_ENDPOINT_URL for MinIO
#   MLFLOW_ADMIN_PASSWORD    the initial admin password of the auth app
# Clients then set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD and pass
#   --tracking-uri http://HOST:5000 to prunetune.
set -euo pipefail
: "${MLFLOW_DB_URI:?set MLFLOW_DB_URI (postgresql://...) from your secret store}"
: "${MLFLOW_ARTIFACTS:?set MLFLOW_ARTIFACTS (s3://bucket/prefix)}"
: "${MLFLOW_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD from your secret store}"
case "$MLFLOW_DB_URI" in postgresql://*) ;; *) echo "MLFLOW_DB_URI must be a postgresql:// URI" >&2; exit 2;; esac
case "$MLFLOW_ARTIFACTS" in s3://*) ;; *) echo "MLFLOW_ARTIFACTS must be an s3:// URI" >&2; exit 2;; esac

pip install --quiet "mlflow[auth]" psycopg2-binary boto3

# The auth app reads its settings from an ini file: write it at start-up, private to this
# process, outside the repository, and remove it on exit.
auth_dir=$(mktemp -d)
trap 'rm -rf "$auth_dir"' EXIT
umask 077
cat > "$auth_dir/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DB_URI:-$MLFLOW_DB_URI}
admin_username = ${MLFLOW_ADMIN_USERNAME:-admin}
admin_password = ${MLFLOW_ADMIN_PASSWORD}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$auth_dir/basic_auth.ini"

exec mlflow server \
  --app-name basic-auth \
  --backend-store-uri "$MLFLOW_DB_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-4}"
