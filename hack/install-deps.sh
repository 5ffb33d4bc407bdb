#!/usr/bin/env bash
# Installs the Debian packages the test suite and `make demo` need. Idempotent:
# checks each package first and touches apt only when something is missing.
# The non-root test user is created by the Go harness (internal/testenv), not here.
set -euo pipefail

packages=(
	uidmap          # newuidmap/newgidmap for rootless BuildKit
	busybox-static  # the busybox base image is made from it
	debootstrap     # the Debian base image
	runc            # BuildKit's OCI worker
	git             # git build contexts
	iproute2        # rootlesskit networking
	ca-certificates
	tar             # GNU tar with --sort, used to pack the Debian rootfs
	libcap2-bin     # setcap: newuidmap/newgidmap file capabilities in kiln's image
)

missing=()
for pkg in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#packages[@]} packages present"
else
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-deps: missing ${missing[*]}: run as root (sudo make deps)" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v docker >/dev/null 2>&1; then
	echo "install-deps: warning: no docker command; tests that run images with Docker will fail" >&2
fi
