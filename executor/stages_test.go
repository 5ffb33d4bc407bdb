package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// TestSolveBuildsExtraStages: stages Kaniko builds that the target does not
// need run next to it; the earliest failing stage fails the build, and a
// step two solves share shows its output once.
func TestSolveBuildsExtraStages(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		reg := testenv.StartRegistry(t)
		base := testenv.PushBase(t, reg, "library/busybox:latest", testenv.BusyboxImage(t))
		cfg := daemonConfig(env)
		cfg.RegistryConfigTOML = fmt.Sprintf("[registry.%q]\n  http = true\n", reg.Host)
		_, c := startTestDaemon(t, cfg)
		dir := writeContext(t, map[string]string{"Dockerfile": "" +
			"FROM " + base + " AS slow\n" +
			"RUN sleep 3 && echo slow-stage-ran && exit 4\n" +
			"FROM " + base + " AS quick\n" +
			"RUN echo quick-stage-ran && exit 3\n" +
			"FROM " + base + " AS shared\n" +
			"RUN echo shared-step-ran | tee /shared\n" +
			"FROM shared AS side\n" +
			"RUN echo side-stage-ran\n" +
			"FROM shared\n" +
			"RUN echo main > /main\n",
		})
		request := func(logs *bytes.Buffer, extra ...string) SolveRequest {
			return SolveRequest{
				ContextDir:     dir,
				DockerfilePath: filepath.Join(dir, "Dockerfile"),
				HostNetwork:    true,
				NoCache:        true,
				OutputDir:      filepath.Join(t.TempDir(), "layout"),
				ExtraTargets:   extra,
				Progress:       ProgressOptions{Logger: testenv.Logger(logs), Stdout: logs, Stderr: logs},
			}
		}

		t.Run("shared step once", func(t *testing.T) {
			var logs bytes.Buffer
			res := solveOrFail(t, c, request(&logs, "side"), &logs)
			files := filesIn(t, layoutImage(t, res))
			if files["shared"] != "shared-step-ran\n" || files["main"] != "main\n" {
				t.Errorf("target image lacks its files: shared %q, main %q", files["shared"], files["main"])
			}
			out := logs.String()
			if !strings.Contains(out, "side-stage-ran") {
				t.Errorf("the extra stage's RUN did not run:\n%s", out)
			}
			for _, once := range []string{"shared-step-ran\n", `msg="RUN echo shared-step-ran | tee /shared"`} {
				if n := strings.Count(out, once); n != 1 {
					t.Errorf("%q shown %d times, want once:\n%s", once, n, out)
				}
			}
		})

		t.Run("earliest failing stage", func(t *testing.T) {
			var logs bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			// quick fails first; Kaniko would have failed in slow before.
			_, err := Solve(ctx, c, request(&logs, "slow", "quick"))
			var coded interface{ ExitCode() int }
			if !errors.As(err, &coded) || coded.ExitCode() != 4 {
				t.Fatalf("error %v: want the slow stage's exit code 4\n%s", err, &logs)
			}
			if out := logs.String(); !strings.Contains(out, "slow-stage-ran") || !strings.Contains(out, "quick-stage-ran") {
				t.Errorf("both failing stages should have run:\n%s", out)
			}
		})
	})
}
