#!/usr/bin/env bash
# `make run`: starts Hutch with defaults. The control plane (`hutch serve`) does not exist yet,
# so this starts envd on its own, which the official SDK can drive in debug mode.
set -euo pipefail
build=${1:-build}
listen=${ENVD_LISTEN:-127.0.0.1:49983}
cat <<EOT
hutch: the control plane (hutch serve) is not built yet; starting the sandbox agent (envd) alone.
Drive it with the official SDK in debug mode, from another terminal:

    export E2B_DEBUG=true E2B_API_KEY=e2b_0000000000000000000000000000000000000000
    node -e "import('e2b').then(async ({Sandbox}) => { const s = await Sandbox.create(); \\
      console.log((await s.commands.run('uname -a')).stdout) })"

envd listens on $listen (Ctrl-C stops it).
EOT
exec "$build/envd" --listen "$listen"
