package e2e

import (
	"slices"
	"strings"
	"testing"
)

// TestUnusedStagesBuildLikeKaniko: Kaniko builds every stage up to the
// target, so a stage the target does not use (a test stage, here an
// unnamed one and a failing named one) still runs and gates the image;
// --skip-unused-stages with a COPY --from drops them as Kaniko does.
func TestUnusedStagesBuildLikeKaniko(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	ctx := writeContext(t, "FROM busybox\n"+
		"RUN echo unnamed-stage-ran\n"+
		"FROM busybox AS broken\n"+
		"RUN sleep 1 && echo broken-stage-ran && exit 3\n"+
		"FROM busybox AS support\n"+
		"RUN echo support > /support\n"+
		"FROM busybox\n"+
		"COPY --from=support /support /support\n")

	forEachMode(t, func(t *testing.T, m mode) {
		repo := "e2e/" + m.name + "/stages"
		t.Run("all stages", func(t *testing.T) {
			r := m.run(t, m.stateDir(t), mirrorArgs(ctx, reg, reg.Ref(repo+":all")))
			if r.code != 3 {
				t.Errorf("exit code %d, want the unused broken stage's 3", r.code)
			}
			for _, ran := range []string{"unnamed-stage-ran", "broken-stage-ran"} {
				if !strings.Contains(r.stdout, ran) {
					t.Errorf("stdout lacks %q: the unused stage did not run", ran)
				}
			}
			if tags := reg.Tags(repo); slices.Contains(tags, "all") {
				t.Errorf("the failed build pushed %s:all", repo)
			}
		})
		t.Run("skip unused stages", func(t *testing.T) {
			args := append(mirrorArgs(ctx, reg, reg.Ref(repo+":skip")), "--skip-unused-stages")
			r := m.run(t, m.stateDir(t), args)
			r.mustSucceed(t)
			for _, skipped := range []string{"unnamed-stage-ran", "broken-stage-ran"} {
				if strings.Contains(r.stdout, skipped) {
					t.Errorf("stdout has %q: Kaniko skips that stage with --skip-unused-stages", skipped)
				}
			}
			img, _ := pulledImage(t, reg, reg.Ref(repo+":skip"))
			if got := rootFile(t, img, "support"); got != "support\n" {
				t.Errorf("/support = %q", got)
			}
		})
	})
}
