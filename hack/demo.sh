#!/usr/bin/env bash
# make demo: a real build with no internet. A local registry serves a busybox
# base made from Debian's busybox-static; kiln builds examples/hello against it
# (as a Kaniko job would, through --registry-mirror) and pushes the result back.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
regpid=
cleanup() {
	[[ -n $regpid ]] && kill "$regpid" 2>/dev/null && wait "$regpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/testregistry" ./internal/cmd/testregistry
"$work/testregistry" -seed-busybox >"$work/addr" &
regpid=$!
for _ in $(seq 1 300); do
	[[ -s $work/addr ]] && break
	kill -0 "$regpid" 2>/dev/null || { echo "demo: the local registry did not start" >&2; exit 1; }
	sleep 0.1
done
host=$(head -n1 "$work/addr")
echo "demo: local registry at $host, busybox seeded as library/busybox"

set -x
bin/executor \
	--context dir://"$PWD/examples/hello" \
	--dockerfile Dockerfile \
	--build-arg GREETING=hello \
	--registry-mirror "$host" --insecure-registry "$host" \
	--destination "$host/demo/hello:latest" \
	--digest-file "$work/digest" \
	--tar-path "$work/hello.tar"
set +x

echo "demo: pushed $host/demo/hello:latest@$(cat "$work/digest")"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
	tag=$(docker load -i "$work/hello.tar" | sed -n 's/^Loaded image: //p' | head -n1)
	echo "demo: docker run $tag →"
	docker run --rm "$tag"
	docker rmi "$tag" >/dev/null
fi
