package migrate

import (
	"reflect"
	"testing"
)

func TestExecutorCalls(t *testing.T) {
	script := `mkdir -p /kaniko/.docker
echo "{\"auths\":{}}" > /kaniko/.docker/config.json # not a call
/kaniko/executor --context "${CI_PROJECT_DIR}" \
    --dockerfile "${CI_PROJECT_DIR}/docker/app Dockerfile" \
    --destination $CI_REGISTRY_IMAGE:$VERSION $KANIKO_ARGS $UNKNOWN_ARGS '--label=a b' --build-arg=X="$(date +%s)" && echo done
DEBUG=1 exec /busybox/../kaniko/executor -f Dockerfile; executor --no-push $EMPTY
`
	got := executorCalls(script, map[string]string{"KANIKO_ARGS": "--cache=true  --cache-ttl=6h", "EMPTY": ""})
	want := [][]string{
		{"--context", "${CI_PROJECT_DIR}", "--dockerfile", "${CI_PROJECT_DIR}/docker/app Dockerfile",
			"--destination", "$CI_REGISTRY_IMAGE:$VERSION", "--cache=true", "--cache-ttl=6h", "$UNKNOWN_ARGS", "--label=a b", "--build-arg=X=$(date +%s)"},
		{"-f", "Dockerfile"},
		{"--no-push"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestBareVariable(t *testing.T) {
	for in, want := range map[string]string{"$A": "A", "${B_1}": "B_1", "$1x": "", "x$A": "", "${A:-x}": "", "plain": ""} {
		if got := bareVariable(in); got != want {
			t.Errorf("bareVariable(%q) = %q, want %q", in, got, want)
		}
	}
}
