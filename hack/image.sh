#!/usr/bin/env bash
# make image: kiln builds its own images, `kiln` and `kiln:debug`, from
# deploy/Dockerfile with its own executor (as root; no Docker engine needed) and
# writes them to out/ as docker-loadable tarballs with their digests:
#   out/kiln.tar        out/kiln.digest
#   out/kiln-debug.tar  out/kiln-debug.digest
# Builds are --reproducible: the same checkout gives the same digests.
#
# Usage: hack/image.sh [<bin dir>]   (default bin/; make image passes a fresh
# static build in out/image-bin)
#
# Environment:
#   IMAGE  repository to name the images (default kiln), e.g. ghcr.io/acme/kiln
#   TAG    tag of the executor image (default latest); the debug image is
#          tagged "debug" for latest and "<TAG>-debug" otherwise, as Kaniko's
#   PUSH=1 also push both images to IMAGE (credentials from DOCKER_CONFIG or
#          ~/.docker/config.json, as Kaniko reads them)
#   OUT    output directory (default out)
#   SOURCE_DATE_EPOCH  timestamp of every file and of the image config
#          (default: the last commit's time, else 0)
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $(id -u) -eq 0 ]] || { echo "image: run as root (sudo make image): kiln builds its images with a rootful BuildKit" >&2; exit 1; }

image=${IMAGE:-kiln}
tag=${TAG:-latest}
debug_tag=debug
[[ $tag == latest ]] || debug_tag=$tag-debug
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

bindir=${1:-bin}
out=${OUT:-out}
context=$(realpath -m "$out/image-context")
mkdir -p "$out"
deploy/stage-rootfs.sh "$context" "$bindir"

# The image's files live in /kaniko, which Kaniko (and kiln's Kaniko-shaped
# output) leaves out of every layer; moving the kaniko dir elsewhere, as
# Kaniko's own self-builds do, keeps them.
KANIKO_DIR=$(mktemp -d)
export KANIKO_DIR
trap 'rm -rf "$KANIKO_DIR"' EXIT

push=(--no-push)
[[ ${PUSH:-} == 1 ]] && push=()

# build TARGET TAG NAME: one image from the staged context.
build() {
	local target=$1 ref=$image:$2 name=$3
	echo "image: building $ref (target $target)"
	"$bindir/executor" \
		--context "dir://$context" \
		--dockerfile Dockerfile \
		--target "$target" \
		--reproducible \
		"${push[@]}" \
		--destination "$ref" \
		--tar-path "$out/$name.tar" \
		--digest-file "$out/$name.digest"
	echo "image: $ref $(cat "$out/$name.digest") → $out/$name.tar"
}

build kiln "$tag" kiln
build debug "$debug_tag" kiln-debug
