package migrate

import (
	"fmt"
	"strings"
)

// apparmorAnnotation is the pre-1.30 way to set a container's AppArmor profile.
const apparmorAnnotation = "container.apparmor.security.beta.kubernetes.io/"

// securityChanges lists the Kubernetes securityContext changes kiln's
// rootless BuildKit needs (see the preflight for why each matters). pod
// and container are the pod-level and container-level securityContext.
func securityChanges(container string, pod, ctr, annotations map[string]any) []Change {
	if ctr["privileged"] == true {
		return nil // privileged lifts every restriction below
	}
	effective := func(key string) any {
		if v, ok := ctr[key]; ok {
			return v
		}
		return pod[key]
	}
	var out []Change
	switch uid := effective("runAsUser"); {
	case uid == nil:
		out = append(out, Change{"securityContext.runAsUser", "unset (Kaniko's image runs as root)", "1000 with runAsGroup: 1000",
			"as root kiln starts a rootful BuildKit daemon, which needs privileged: true; as a non-root user it runs BuildKit rootless"})
	case fmt.Sprint(uid) == "0":
		out = append(out, Change{"securityContext.runAsUser", "0", "1000 with runAsGroup: 1000",
			"as root kiln starts a rootful BuildKit daemon, which needs privileged: true; as a non-root user it runs BuildKit rootless"})
	}
	if t := fmt.Sprint(dig(effective("seccompProfile"), "type")); t != "Unconfined" {
		out = append(out, Change{"securityContext.seccompProfile", describeUnset(t, "RuntimeDefault"), "{type: Unconfined}",
			"default seccomp profiles block the unshare and mount calls rootless BuildKit makes"})
	}
	apparmorOff := fmt.Sprint(dig(effective("appArmorProfile"), "type")) == "Unconfined" ||
		asString(annotations[apparmorAnnotation+container]) == "unconfined"
	if !apparmorOff {
		out = append(out, Change{"securityContext.appArmorProfile", describeUnset(fmt.Sprint(dig(effective("appArmorProfile"), "type")), "RuntimeDefault"),
			"{type: Unconfined} (Kubernetes < 1.30: annotation " + apparmorAnnotation + container + ": unconfined)",
			"the runtime's default AppArmor profile denies mount"})
	}
	if ctr["allowPrivilegeEscalation"] == false {
		out = append(out, Change{"securityContext.allowPrivilegeEscalation", "false", "true (or remove it)",
			"newuidmap/newgidmap are setuid binaries; no_new_privs stops them"})
	}
	caps := asMap(ctr["capabilities"])
	dropped := strings.ToUpper(strings.Join(stringList(caps["drop"]), ","))
	added := strings.ToUpper(strings.Join(stringList(caps["add"]), ","))
	if (strings.Contains(dropped, "ALL") || strings.Contains(dropped, "SETUID") || strings.Contains(dropped, "SETGID")) &&
		!(strings.Contains(added, "SETUID") && strings.Contains(added, "SETGID")) {
		out = append(out, Change{"securityContext.capabilities", "drop: [" + dropped + "]", "add: [SETUID, SETGID]",
			"newuidmap/newgidmap need CAP_SETUID and CAP_SETGID"})
	}
	return out
}

func describeUnset(v, def string) string {
	if v == "" || v == "<nil>" {
		return "unset (" + def + ")"
	}
	return v
}

// gitlabRunnerChange is the runner-side change for GitLab jobs, whose
// security settings live in the runner's config.toml, not in the job.
var gitlabRunnerChange = Change{
	Setting: "GitLab Runner (config.toml)",
	Current: "the runner's default container security",
	Required: `Kubernetes executor: [runners.kubernetes.pod_annotations] "container.apparmor.security.beta.kubernetes.io/build" = "unconfined", ` +
		`a seccomp Unconfined profile for the build container and a non-root user (run_as_user = 1000); ` +
		`Docker executor: security_opt = ["seccomp:unconfined", "apparmor:unconfined"]`,
	Why: "rootless BuildKit needs user namespaces and mounts, which the default seccomp and AppArmor profiles block",
}
