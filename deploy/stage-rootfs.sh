#!/usr/bin/env bash
# Stages the build context for deploy/Dockerfile:
#   <out>/Dockerfile   a copy of deploy/Dockerfile
#   <out>/rootfs/      everything the `kiln` image holds
#   <out>/debug/       what `kiln:debug` adds (busybox at /busybox, /bin/sh)
# runc and newuidmap/newgidmap come from Debian packages and are dynamically
# linked, so exactly the shared libraries ldd names go along, at the paths the
# dynamic loader searches. Every mtime is SOURCE_DATE_EPOCH, so the staged tree
# (and the image built from it with --reproducible) is the same on every run.
#
# Usage: deploy/stage-rootfs.sh <out dir> [<bin dir>]   (bin dir defaults to bin/)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:?usage: deploy/stage-rootfs.sh <out dir> [<bin dir>]}
bindir=${2:-bin}
epoch=${SOURCE_DATE_EPOCH:-0}

die() { echo "stage-rootfs: $*" >&2; exit 1; }

helpers=(docker-credential-ecr-login docker-credential-gcr docker-credential-acr-env)
for b in executor kiln-runc kiln-sbom kiln-helper buildkitd rootlesskit "${helpers[@]}"; do
	[[ -x $bindir/$b ]] || die "$bindir/$b is missing: run make build"
	# The image has no libc for them: they must be static (CGO_ENABLED=0, as make build does).
	ldd "$bindir/$b" >/dev/null 2>&1 && die "$bindir/$b is dynamically linked: rebuild it with make build (CGO_ENABLED=0)"
done
runc=$(command -v runc) || die "runc is missing: run hack/install-deps.sh"
newuidmap=$(command -v newuidmap) || die "newuidmap is missing: run hack/install-deps.sh (package uidmap)"
newgidmap=$(command -v newgidmap) || die "newgidmap is missing: run hack/install-deps.sh (package uidmap)"
command -v setcap >/dev/null || die "setcap is missing: run hack/install-deps.sh (package libcap2-bin)"
busybox=$(command -v busybox) || die "busybox is missing: run hack/install-deps.sh (package busybox-static)"
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked: install busybox-static"
cacerts=/usr/share/ca-certificates/mozilla
[[ -d $cacerts ]] || die "$cacerts is missing: run hack/install-deps.sh (package ca-certificates)"

rm -rf "$out"
mkdir -p "$out"
root=$out/rootfs
debug=$out/debug

# install_file SRC DEST MODE: copies content (following symlinks) with MODE.
install_file() {
	mkdir -p "$(dirname "$2")"
	cp --dereference "$1" "$2"
	chmod "$3" "$2"
}

# Kaniko's layout. /kaniko and the directories users write credentials and
# CA bundles into are world-writable so a non-root build user can too.
install -d -m 0777 "$root/kaniko" "$root/kaniko/.docker" "$root/kaniko/ssl" "$root/kaniko/ssl/certs"
install -d -m 0777 "$root/kaniko/buildkit"
for b in executor kiln-runc kiln-sbom kiln-helper buildkitd rootlesskit "${helpers[@]}"; do
	install_file "$bindir/$b" "$root/kaniko/$b" 0755
done
# docker-credential-gcr reads Application Default Credentials (workload
# identity, GOOGLE_APPLICATION_CREDENTIALS), configured where Kaniko's image
# keeps it (the Dockerfile sets DOCKER_CREDENTIAL_GCR_CONFIG to this file).
gcr_config=$root/kaniko/.config/gcloud/docker_credential_gcr_config.json
install -d -m 0777 "$root/kaniko/.config" "$root/kaniko/.config/gcloud"
DOCKER_CREDENTIAL_GCR_CONFIG=$gcr_config "$bindir/docker-credential-gcr" config --token-source=env >/dev/null
chmod 0666 "$gcr_config"
# The Mozilla bundle exactly as update-ca-certificates concatenates it, from
# the package's files rather than this machine's possibly extended bundle.
find "$cacerts" -name '*.crt' -print0 | LC_ALL=C sort -z | xargs -0 cat >"$root/kaniko/ssl/certs/ca-certificates.crt"
chmod 0666 "$root/kaniko/ssl/certs/ca-certificates.crt"

# Rootless BuildKit: runc and newuidmap/newgidmap, with their libraries.
install_file "$runc" "$root/usr/sbin/runc" 0755
# newuidmap/newgidmap carry file capabilities rather than the setuid bit:
# setuid root, they open /proc/<pid>/uid_map as root and the kernel then
# wants CAP_SYS_ADMIN, which containers lack; with file capabilities they run
# as the build user, who owns the namespace, and need only CAP_SETUID and
# CAP_SETGID (so pods that drop ALL and add back those two work). COPY does
# not keep security.capability, so they travel in a tarball that ADD unpacks
# with its extended attributes.
uidmap=$out/uidmap
install_file "$newuidmap" "$uidmap/usr/bin/newuidmap" 0755
install_file "$newgidmap" "$uidmap/usr/bin/newgidmap" 0755
setcap cap_setuid=ep "$uidmap/usr/bin/newuidmap"
setcap cap_setgid=ep "$uidmap/usr/bin/newgidmap"
ldd "$runc" "$newuidmap" "$newgidmap" |
	awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && NF > 1 { print $1 }' |
	LC_ALL=C sort -u |
	while read -r lib; do
		# Keep the file's own mode: the dynamic loader must stay executable.
		install_file "$lib" "$root$lib" "$(stat --dereference --format=%a "$lib")"
	done

install -d -m 0755 "$root/etc" "$root/root" "$root/workspace"
# /run too: runc keeps its state in /run/runc when $USER is root, which
# Kaniko's environment sets even for the rootless build user.
install -d -m 1777 "$root/tmp" "$root/run"
# root builds as Kaniko did; uid 1000 is the rootless build user. Both get a
# subordinate ID range because a root without CAP_SYS_ADMIN builds rootless too.
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
kiln:x:1000:1000:kiln build user:/workspace:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
kiln:x:1000:
EOF
for f in subuid subgid; do
	printf 'root:100000:65536\nkiln:100000:65536\n' >"$root/etc/$f"
done
cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$root"/etc/{passwd,group,subuid,subgid,nsswitch.conf}

# The debug flavour: busybox with one symlink per applet, and /bin/sh.
install_file "$busybox" "$debug/busybox/busybox" 0755
"$busybox" --list | LC_ALL=C sort | while read -r applet; do
	[[ $applet == busybox ]] || ln -s busybox "$debug/busybox/$applet"
done
install -d -m 0755 "$debug/bin"
ln -s /busybox/sh "$debug/bin/sh"

install_file deploy/Dockerfile "$out/Dockerfile" 0644
find "$out" -exec touch --no-dereference --date="@$epoch" {} +
tar --create --file="$out/uidmap.tar" --directory="$uidmap" \
	--format=posix --pax-option=delete=atime,delete=ctime,exthdr.name=%d/PaxHeaders/%f \
	--xattrs --xattrs-include=security.capability \
	--sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" usr
rm -rf "$uidmap"
touch --date="@$epoch" "$out/uidmap.tar"
