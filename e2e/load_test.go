package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// concurrentBuilds is how many builds TestConcurrentBuilds runs at once:
// 8 under make reliability (KILN_RELIABILITY_FULL=1), 3 in make test.
func concurrentBuilds() int {
	if os.Getenv("KILN_RELIABILITY_FULL") == "1" {
		return 8
	}
	return 3
}

// loadDockerfile builds an image from its VARIANT build-arg only, so
// --reproducible digests are comparable across builds.
const loadDockerfile = "FROM busybox\nARG VARIANT\nCOPY data.txt /data.txt\nRUN echo \"$VARIANT\" > /variant && seq 1 20000 > /numbers\n"

// TestConcurrentBuilds: builds at once on one machine, each with its own
// private daemon, once with a --cache-dir each and once sharing one. Every
// build succeeds; the builds of the reference variant give exactly the
// digest of a lone build of it, and each other build's image holds its own
// variant: no cross-talk between daemons, work dirs or the shared cache.
func TestConcurrentBuilds(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	reg := mirrorRegistry(t)
	ctx := writeContext(t, loadDockerfile)
	if err := os.WriteFile(ctx+"/data.txt", []byte("shared context\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := mode{name: "root"}
	build := func(t *testing.T, dest, variant string, extra ...string) result {
		args := append(mirrorArgs(ctx, reg, dest), "--reproducible", "--build-arg", "VARIANT="+variant)
		return m.run(t, m.stateDir(t), append(args, extra...))
	}
	lone := reg.Ref("e2e/load/lone:v1")
	build(t, lone, "reference").mustSucceed(t)
	_, want := pulledImage(t, reg, lone)

	n := concurrentBuilds()
	for _, sharing := range []bool{false, true} {
		name := "separate-cache-dirs"
		sharedDir := testenv.ReadableTempDir(t)
		if sharing {
			name = "shared-cache-dir"
		}
		t.Run(name, func(t *testing.T) {
			results := make([]result, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					cacheDir := sharedDir
					if !sharing {
						cacheDir = testenv.ReadableTempDir(t)
					}
					results[i] = build(t, reg.Ref(fmt.Sprintf("e2e/load/%s-%d:v1", name, i)), variantOf(i),
						"--cache=true", "--no-push-cache", "--cache-dir", cacheDir)
				})
			}
			wg.Wait()
			private := 0
			for i, r := range results {
				if r.code != 0 {
					t.Errorf("build %d exited %d:\n%s", i, r.code, r.stderr)
					continue
				}
				if strings.Contains(r.stderr, "is in use by another build") {
					private++
				}
				dest := reg.Ref(fmt.Sprintf("e2e/load/%s-%d:v1", name, i))
				img, digest := pulledImage(t, reg, dest)
				if got := rootFile(t, img, "variant"); got != variantOf(i)+"\n" {
					t.Errorf("build %d: /variant = %q, want %q", i, got, variantOf(i)+"\n")
				}
				if variantOf(i) == "reference" && digest != want {
					t.Errorf("build %d of the reference variant: digest %s, a lone build's %s", i, digest, want)
				}
			}
			if sharing && private == n {
				t.Errorf("no build used the shared --cache-dir")
			}
			t.Logf("%d builds, %d of them kept off the shared --cache-dir by its lock", n, private)
		})
	}
}

// variantOf gives even builds the reference variant, odd ones their own.
func variantOf(i int) string {
	if i%2 == 0 {
		return "reference"
	}
	return fmt.Sprintf("variant-%d", i)
}
