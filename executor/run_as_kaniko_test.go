package executor

import (
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// TestRunSeesKanikoEnvironmentAndIDs builds through kiln-runc: RUN gets no
// variable or mount of BuildKit's tracing, and the ids Kaniko's RUN gets.
func TestRunSeesKanikoEnvironmentAndIDs(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		_, base, c := startDaemonWithBusybox(t, env)

		dockerfile := "FROM " + base + "\n" +
			"RUN env > /tmp/env-plain.txt && id > /tmp/id-root.txt && ls -a /dev > /tmp/dev.txt\n" +
			"ENV OTEL_TRACES_EXPORTER=mine TRACEPARENT=set-by-the-build\n" +
			"RUN env > /tmp/env-build.txt\n" +
			"RUN addgroup -g 3000 web && adduser user web\n" +
			"USER 1001:50\n" +
			"RUN id > /tmp/id-1001-50.txt\n" +
			"USER 1001\n" +
			"RUN id > /tmp/id-1001.txt\n" +
			"USER user:50\n" +
			"RUN id > /tmp/id-user.txt\n"
		files, _ := buildDockerfile(t, c, dockerfile)

		for _, name := range []string{"tmp/env-plain.txt", "tmp/env-build.txt"} {
			var buildkits []string
			for line := range strings.SplitSeq(files[name], "\n") {
				if strings.HasPrefix(line, "OTEL_EXPORTER_") || line == "OTEL_TRACES_EXPORTER=otlp" || strings.HasPrefix(line, "TRACESTATE=") ||
					(strings.HasPrefix(line, "TRACEPARENT=") && line != "TRACEPARENT=set-by-the-build") {
					buildkits = append(buildkits, line)
				}
			}
			if len(buildkits) > 0 {
				t.Errorf("%s has BuildKit's tracing variables %q:\n%s", name, buildkits, files[name])
			}
		}
		if !strings.Contains(files["tmp/env-plain.txt"], "PATH=") {
			t.Errorf("env-plain.txt lacks PATH:\n%s", files["tmp/env-plain.txt"])
		}
		for _, want := range []string{"OTEL_TRACES_EXPORTER=mine\n", "TRACEPARENT=set-by-the-build\n"} {
			if strings.Count(files["tmp/env-build.txt"], want) != 1 {
				t.Errorf("env-build.txt should hold the build's %q once:\n%s", want, files["tmp/env-build.txt"])
			}
		}
		if strings.Contains(files["tmp/dev.txt"], "otel") {
			t.Errorf("/dev holds BuildKit's trace socket: %s", files["tmp/dev.txt"])
		}
		for name, want := range map[string]string{
			// uid 0 keeps BuildKit's ids.
			"tmp/id-root.txt": "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n",
			// Kaniko ignores the group of USER; without a passwd entry the gid is the uid.
			"tmp/id-1001-50.txt": "uid=1001 gid=1001\n",
			"tmp/id-1001.txt":    "uid=1001 gid=1001\n",
			"tmp/id-user.txt":    "uid=1000(user) gid=1000(user) groups=1000(user),3000(web)\n",
		} {
			if files[name] != want {
				t.Errorf("%s = %q, want %q", name, files[name], want)
			}
		}
	})
}
