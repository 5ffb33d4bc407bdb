package runner

import (
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/golden"
	"github.com/kilnbuild/kiln/conformance/inspect"
)

// kanikoAuthor is the author Kaniko writes on the history entry of each
// layer it adds (its constants.Author); --reproducible clears it.
const kanikoAuthor = "kaniko"

// ComparePlain measures an image kiln built without --reproducible against
// Kaniko's golden (made with it) up to corpus.PlainTop: times are ignored
// (inspect.WithoutTimes) and the golden is first put into the form Kaniko
// gives the image without --reproducible, as far as that is known
// (plainReference). bases are the harness base images' histories.
func ComparePlain(want *golden.Golden, got golden.Outcome, img *inspect.Image, bases [][]inspect.History) Comparison {
	ref := *want
	if want.Image != nil {
		ref.Image = plainReference(want.Image, bases).WithoutTimes()
	}
	if img != nil {
		img = img.WithoutTimes()
	}
	return compare(&ref, got, img, corpus.PlainTop)
}

// plainReference is the golden as Kaniko writes it without --reproducible,
// beyond times. mutate.Canonical under --reproducible also
//   - re-tars every layer: only times change, which inspect does not record;
//   - clears every history author: without it Kaniko keeps the base image's
//     entries as they are and writes "kaniko" on each entry it adds, so the
//     entries of the longest base history the golden starts with get that
//     base's authors and every later one "kaniko" (also those of a case
//     built FROM cases/<name>: Kaniko added them in that case's build);
//   - drops the config's author, variant and hostname: Kaniko otherwise
//     keeps the base's, and no harness base image has any, so the golden's
//     empty values stand.
func plainReference(img *inspect.Image, bases [][]inspect.History) *inspect.Image {
	out := *img
	history := slices.Clone(img.Config.History)
	base := longestBase(history, bases)
	for i := range history {
		if i < len(base) {
			history[i].Author = base[i].Author
		} else {
			history[i].Author = kanikoAuthor
		}
	}
	out.Config.History = history
	return &out
}

// longestBase is the longest of bases that history starts with, comparing
// what --reproducible keeps of an entry; nil when none (FROM scratch).
func longestBase(history []inspect.History, bases [][]inspect.History) []inspect.History {
	var longest []inspect.History
	for _, b := range bases {
		if len(b) <= len(longest) || len(b) > len(history) {
			continue
		}
		if slices.EqualFunc(b, history[:len(b)], sameEntry) {
			longest = b
		}
	}
	return longest
}

func sameEntry(a, b inspect.History) bool {
	return a.CreatedBy == b.CreatedBy && a.Comment == b.Comment && a.EmptyLayer == b.EmptyLayer
}

// baseHistories reads the history of every base image seeded into the
// harness registry.
func baseHistories(h *golden.Harness) ([][]inspect.History, error) {
	var out [][]inspect.History
	seen := map[string]bool{}
	for path, digest := range h.BaseDigests {
		if seen[digest] {
			continue
		}
		seen[digest] = true
		ref, err := name.ParseReference(h.Registry.Ref(path), name.Insecure)
		if err != nil {
			return nil, err
		}
		img, err := remote.Image(ref, h.Registry.RemoteOptions()...)
		if err != nil {
			return nil, fmt.Errorf("reading base image %s: %w", path, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("reading base image %s: %w", path, err)
		}
		out = append(out, inspect.HistoryOf(cf.History))
	}
	return out, nil
}
