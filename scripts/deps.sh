#!/usr/bin/env bash
# Installs what building and testing Hutch needs on Debian 12, only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
	gcc make meson ninja-build pkg-config
	libmicrohttpd-dev libjansson-dev libssl-dev zlib1g-dev libgnutls28-dev
	libmnl-dev libnftables-dev nettle-dev libsqlite3-dev libcurl4-openssl-dev
	nftables bubblewrap
	clang libclang-rt-14-dev
	curl ca-certificates procps iproute2 util-linux
	debootstrap debian-archive-keyring gpgv
	libseccomp-dev busybox-static e2fsprogs
	sqlite3
	libarchive-dev skopeo docker-registry
)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The package starts a registry on :5000 for everyone; the tests run their own on loopback.
	if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
		$sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
	fi
fi

# The official SDK for the integration tests and benchmarks, pinned by the lock file.
if [ -f tests/integration/package-lock.json ] && [ ! -d tests/integration/node_modules/e2b ]; then
	echo "deps: npm ci in tests/integration"
	(cd tests/integration && npm ci --no-audit --no-fund --loglevel=error)
fi
