#!/usr/bin/env bash
# `make run`: starts `hutch serve` with defaults (it builds the base template if needed),
# printing the three variables that point the official SDK at it.
set -euo pipefail
build=${1:-build}
if [ "$(id -u)" -ne 0 ]; then
	echo "make run: hutch serve needs root (namespaces, mounts, cgroups, network); run it as root" >&2
	exit 1
fi
data=${HUTCH_DATA_DIR:-/var/lib/hutch}
api=${HUTCH_LISTEN:-127.0.0.1:3000}
sbx=${HUTCH_SANDBOX_LISTEN:-127.0.0.1:49983}
mkdir -p "$data"
key_file="$data/api-key"
if [ -z "${HUTCH_API_KEY:-}" ] && [ -s "$key_file" ]; then
	HUTCH_API_KEY=$(head -n1 "$key_file")
fi
if [ -z "${HUTCH_API_KEY:-}" ]; then
	# Made here so it can be printed below; hutch stores only its hash.
	HUTCH_API_KEY="e2b_$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')"
	(umask 077 && printf '%s\n' "$HUTCH_API_KEY" >"$key_file")
fi
export HUTCH_API_KEY
cat <<EOT
Starting hutch serve (data in $data). The first start on this machine builds the base
template (templates/base/e2b.Dockerfile: debootstrap and apt, about a minute; its log follows);
later starts use the layer cache and take a second.

Point the official SDK (npm e2b / @e2b/code-interpreter) at it:

    export E2B_API_URL=http://$api
    export E2B_SANDBOX_URL=http://$sbx
    export E2B_API_KEY=$HUTCH_API_KEY

Ctrl-C stops the server and every sandbox.
EOT
exec "$build/hutch" serve --data-dir "$data" --listen "$api" --sandbox-listen "$sbx"
