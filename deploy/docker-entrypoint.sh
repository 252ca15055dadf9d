#!/bin/sh
# The container's entrypoint: on the first start with an empty data volume, write a data
# directory with `restguard init` whose gateway listens on every interface of the container
# (the admin listener stays on its loopback); then run the command (`restguard serve`).
set -eu
config=${RESTGUARD_CONFIG:-/var/lib/restguard/restguard.toml}
if [ ! -e "$config" ]; then
  if [ -z "${RESTGUARD_UPSTREAM:-}" ]; then
    echo "restguard: $config does not exist. Set RESTGUARD_UPSTREAM=http://your-api:port for the" >&2
    echo "first start, or mount a data directory made with 'restguard init'." >&2
    exit 1
  fi
  restguard init --dir "$(dirname "$config")" --upstream "$RESTGUARD_UPSTREAM" >&2
  sed -i 's/^listen = "127\.0\.0\.1:8080"$/listen = "0.0.0.0:8080"/' "$config"
  if ! grep -q '^listen = "0\.0\.0\.0:8080"$' "$config"; then
    echo "restguard: could not set [server] listen in $config; edit it by hand" >&2
    exit 1
  fi
  echo "restguard: wrote $config; edit its [[routes]] (and public_url), then reload (SIGHUP)" >&2
fi
exec "$@"
