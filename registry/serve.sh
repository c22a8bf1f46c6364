#!/usr/bin/env bash
# Start the team registry: `mlflow server` on PostgreSQL with an artifact root.
#   ZOO_REGISTRY_DB=postgresql://zoo:zoo@127.0.0.1:5432/zoo \
#   ZOO_REGISTRY_ARTIFACTS=/srv/zoo-artifacts bash registry/serve.sh [--port 5000]
#     [--allowed-host NAME]... [--basic-auth --auth-dir DIR] [--host 0.0.0.0]
# Options are `zoo registry serve`'s; see registry/README.md.
set -euo pipefail
: "${ZOO_REGISTRY_ARTIFACTS:?set ZOO_REGISTRY_ARTIFACTS to the artifact root folder or URI}"
exec zoo registry serve "$@"
