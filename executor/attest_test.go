package executor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPinProvenance(t *testing.T) {
	run := func(id, started, layer, mapping string) string {
		return `{"buildDefinition":{"buildType":"https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"},` +
			`"runDetails":{"metadata":{"invocationId":"` + id + `","startedOn":"` + started + `","finishedOn":"` + started + `",` +
			`"buildkit_metadata":{"layers":{"step1:0":[[{"digest":"` + layer + `"}]]},"source":{"infos":[{"filename":"Dockerfile","digestMapping":{"` + mapping + `":"step0"}}]}}}}}`
	}
	created := time.Unix(1700000000, 0).UTC()
	one, err := pinProvenance([]byte(run("7zvie", "2026-12-06T02:12:00Z", "sha256:a9", "sha256:75")), created)
	if err != nil {
		t.Fatal(err)
	}
	two, _ := pinProvenance([]byte(run("3yhzz", "2026-12-06T02:13:00Z", "sha256:41", "sha256:f2")), created)
	if string(one) != string(two) {
		t.Errorf("two runs of one build differ:\n%s\n%s", one, two)
	}
	var p map[string]any
	if err := json.Unmarshal(one, &p); err != nil {
		t.Fatal(err)
	}
	meta := objectAt(p, "runDetails", "metadata")
	if meta["startedOn"] != "2023-11-14T22:13:20Z" || meta["invocationId"] != nil || !strings.Contains(string(one), `"filename":"Dockerfile"`) {
		t.Errorf("pinned provenance: %s", one)
	}
}
