#!/usr/bin/env bash
# Generates the git-ignored go.work that builds kiln against the pinned BuildKit
# module with kiln's patches (hack/buildkit/*.patch) applied: a copy of the
# module under .build/, never BuildKit's source in this repository. Re-run by
# make whenever go.mod or a patch changes; fails loudly when a patch no longer
# applies (after a BuildKit upgrade), naming it.
#
# Why: kiln's embedded engine (executor/embedded) runs BuildKit where mount(2)
# is forbidden; BuildKit mounts read-only binds even when a plain path would
# do (snapshot/localmounter_linux.go). See docs/architecture.md.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
module=github.com/moby/buildkit
# GOWORK=off: read the version and source from go.mod, not a previous go.work.
read -r version dir < <(GOWORK=off GOFLAGS=-mod=mod $GO list -m -f '{{.Version}} {{.Dir}}' "$module")
if [[ -z $dir || ! -d $dir ]]; then
	GOWORK=off $GO mod download "$module"
	read -r version dir < <(GOWORK=off GOFLAGS=-mod=mod $GO list -m -f '{{.Version}} {{.Dir}}' "$module")
fi

patches=(hack/buildkit/*.patch)
stamp=$( (echo "$version"; cat "${patches[@]}") | sha256sum | cut -c1-16)
copy=.build/buildkit-$version-$stamp

if [[ ! -f $copy/.kiln-patched ]]; then
	rm -rf .build/buildkit-*
	mkdir -p .build
	cp -r "$dir" "$copy.tmp"
	chmod -R u+w "$copy.tmp"
	for p in "${patches[@]}"; do
		if ! (cd "$copy.tmp" && git apply -p1 --check "$OLDPWD/$p"); then
			echo "buildkit-workspace: $p does not apply to $module $version; update the patch for this BuildKit release" >&2
			rm -rf "$copy.tmp"
			exit 1
		fi
		(cd "$copy.tmp" && git apply -p1 "$OLDPWD/$p")
	done
	touch "$copy.tmp/.kiln-patched"
	mv "$copy.tmp" "$copy"
fi

goversion=$(sed -n 's/^go //p' go.mod)
tmp=$(mktemp go.work.XXXXXX)
printf 'go %s\n\nuse (\n\t.\n\t./%s\n)\n' "$goversion" "$copy" >"$tmp"
if ! cmp -s "$tmp" go.work 2>/dev/null; then
	mv "$tmp" go.work
	rm -f go.work.sum
else
	rm -f "$tmp"
fi
