package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// TestSecretsNeverLogged: a --build-arg value that RUN, ENV and WORKDIR use
// and the registry password appear in no byte of the executor's output at
// any verbosity, nor in a failing build's error or the image's history; the
// instruction lines show the value unexpanded, as Kaniko's do.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t, testenv.WithBasicAuth(registryUser, registryPassword))
	config := testenv.DockerConfig(t, map[string]string{reg.Host: registryUser + ":" + registryPassword})
	token := "kiln-token-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	builds := writeContext(t, `FROM busybox
ARG TOKEN
ENV DERIVED=d-$TOKEN
RUN test -n "$TOKEN" && echo "the token has ${#TOKEN} bytes"
RUN test "$DERIVED" = "d-$TOKEN"
WORKDIR /w-${TOKEN}
`)
	fails := writeContext(t, "FROM busybox\nARG TOKEN\nRUN test \"$TOKEN\" = wrong || exit 3\n")

	forEachMode(t, func(t *testing.T, m mode) {
		for _, level := range []string{"info", "debug", "trace"} {
			t.Run(level, func(t *testing.T) {
				repo := "e2e/" + m.name + "/secrets-" + level
				args := append(mirrorArgs(builds, reg, reg.Ref(repo+":v1")), "--build-arg", "TOKEN="+token, "--verbosity", level)
				r := m.run(t, m.stateDir(t), args, "DOCKER_CONFIG="+config)
				r.mustSucceed(t)
				assertNoSecret(t, r.stdout+r.stderr, token)
				for _, written := range []string{`RUN test -n "$TOKEN" && echo`, `RUN test "$DERIVED" = "d-$TOKEN"`, `WORKDIR /w-${TOKEN}`} {
					if !strings.Contains(r.stderr, written) {
						t.Errorf("no instruction line %q as written", written)
					}
				}
				img, _ := pulledImage(t, reg, reg.Ref(repo+":v1"))
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				history, _ := json.Marshal(cf.History)
				assertNoSecret(t, string(history), token)

				repo = "e2e/" + m.name + "/secrets-fail-" + level
				args = append(mirrorArgs(fails, reg, reg.Ref(repo+":v1")), "--build-arg", "TOKEN="+token, "--verbosity", level)
				r = m.run(t, m.stateDir(t), args, "DOCKER_CONFIG="+config)
				if r.code != 3 {
					t.Errorf("exit code %d, want RUN's 3", r.code)
				}
				assertNoSecret(t, r.stdout+r.stderr, token)
				assertNothingPushed(t, reg, repo)
			})
		}
	})
}

func assertNoSecret(t *testing.T, out, token string) {
	t.Helper()
	for _, secret := range []string{token, registryPassword} {
		if i := strings.Index(out, secret); i >= 0 {
			t.Errorf("%q appears in the output: …%s…", secret, out[max(0, i-200):min(len(out), i+len(secret)+50)])
		}
	}
}
