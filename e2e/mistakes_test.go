package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMistakesAreExplained: the Dockerfile and context mistakes users make
// most get one line naming the instruction, file or flag and the fix, exit
// 1, no BuildKit internals, nothing pushed.
func TestMistakesAreExplained(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	cases := []struct {
		name       string
		dockerfile string
		args       []string
		prepare    func(t *testing.T, ctx string)
		rootless   bool     // only the non-root user can lack a permission
		want       []string // all in the last stderr line
	}{
		{
			name:       "copy-missing-file",
			dockerfile: "FROM busybox\nCOPY missing.txt /\n",
			want:       []string{"COPY missing.txt /", "missing.txt not found in the build context"},
		},
		{
			name:       "copy-missing-in-subdir",
			dockerfile: "FROM busybox\nADD app/config.yaml /etc/\n",
			want:       []string{"ADD app/config.yaml /etc/", "app/config.yaml not found in the build context"},
		},
		{
			name:       "copy-from-unknown-stage",
			dockerfile: "FROM busybox AS build\nRUN true\nFROM busybox\nCOPY --from=biuld /a /a\n",
			want:       []string{"COPY --from=biuld: no stage is named biuld"},
		},
		{
			name:       "target-not-found",
			dockerfile: "FROM busybox AS build\nRUN true\n",
			args:       []string{"--target", "relase"},
			want:       []string{"relase"},
		},
		{
			name:       "bad-base-image-name",
			dockerfile: "FROM Busy_Box:latest\nRUN true\n",
			want:       []string{"Busy_Box"},
		},
		{
			name:       "unreadable-context-file",
			dockerfile: "FROM busybox\nCOPY secret.key /\n",
			rootless:   true,
			prepare: func(t *testing.T, ctx string) {
				// BuildKit's file sync alone would send it as an empty file.
				key := filepath.Join(ctx, "secret.key")
				if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"cannot read secret.key in the build context"},
		},
	}
	forEachMode(t, func(t *testing.T, m mode) {
		for _, c := range cases {
			if c.rootless && !m.rootless {
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				ctx := writeContext(t, c.dockerfile)
				if c.prepare != nil {
					c.prepare(t, ctx)
				}
				repo := "e2e/mistake/" + m.name + "/" + c.name
				r := m.run(t, m.stateDir(t), append(mirrorArgs(ctx, reg, reg.Ref(repo+":v1")), c.args...))
				for _, want := range c.want {
					r.assertOneLineFailure(t, want)
				}
				for _, internal := range []string{"cache key", "checksum of ref", "failed to solve", "rpc error", "llb"} {
					if strings.Contains(r.lastLine(), internal) {
						t.Errorf("the error shows BuildKit's internals (%q): %s", internal, r.lastLine())
					}
				}
				assertNothingPushed(t, reg, repo)
			})
		}
	})
}
