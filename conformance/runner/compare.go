package runner

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/golden"
	"github.com/kilnbuild/kiln/conformance/inspect"
)

// LevelCount is the number of conformance levels (L0..L4).
const LevelCount = corpus.LevelDigest + 1

// maxDiffLines bounds each level's diff in the report.
const maxDiffLines = 12

// Comparison is kiln's result for one case measured against the golden.
type Comparison struct {
	// Pass says whether each level holds on its own.
	Pass [LevelCount]bool
	// Level is the highest level with every level up to it passing, or
	// corpus.LevelNone when the outcomes differ.
	Level int
	// Diffs name, per level, what differs (fields, paths).
	Diffs [LevelCount][]string
}

// Compare measures kiln's outcome and image against Kaniko's golden. When
// both builds failed the same way there is nothing more to compare and every
// level holds.
func Compare(want *golden.Golden, got golden.Outcome, img *inspect.Image) Comparison {
	return compare(want, got, img, corpus.LevelDigest)
}

// compare judges levels up to top; higher ones neither pass nor list diffs.
func compare(want *golden.Golden, got golden.Outcome, img *inspect.Image, top int) Comparison {
	var c Comparison
	c.Diffs[corpus.LevelOutcome] = outcomeDiff(want.Outcome, got)
	c.Pass[corpus.LevelOutcome] = len(c.Diffs[corpus.LevelOutcome]) == 0
	switch {
	case !c.Pass[corpus.LevelOutcome]:
		// Nothing else is comparable.
	case got.Result == corpus.OutcomeFailed:
		for l := range top + 1 {
			c.Pass[l] = true
		}
	case want.Image == nil || img == nil:
		c.Diffs[corpus.LevelConfig] = []string{"no image to compare (golden or kiln image missing)"}
	default:
		compareImages(&c, want.Image, img, top)
	}
	c.Level = corpus.LevelNone
	for l := range top + 1 {
		if !c.Pass[l] {
			break
		}
		c.Level = l
	}
	return c
}

func compareImages(c *Comparison, want, got *inspect.Image, top int) {
	levels := []struct {
		level int
		diff  func(want, got *inspect.Image) []string
	}{
		{corpus.LevelConfig, configDiff},
		{corpus.LevelFiles, filesystemDiff},
		{corpus.LevelLayers, layersDiff},
		{corpus.LevelDigest, digestDiff},
	}
	for _, l := range levels {
		if l.level > top {
			break
		}
		c.Diffs[l.level] = l.diff(want, got)
		c.Pass[l.level] = len(c.Diffs[l.level]) == 0
	}
}

func outcomeDiff(want, got golden.Outcome) []string {
	if want.Result != got.Result {
		return []string{fmt.Sprintf("kaniko %s, kiln %s%s", describeOutcome(want), describeOutcome(got), messageNote(want, got))}
	}
	var diffs []string
	if want.ExitCode != got.ExitCode {
		diffs = append(diffs, fmt.Sprintf("exit code: kaniko %d, kiln %d", want.ExitCode, got.ExitCode))
	}
	if want.Class != got.Class {
		diffs = append(diffs, fmt.Sprintf("failure class: kaniko %s, kiln %s%s", want.Class, got.Class, messageNote(want, got)))
	}
	return diffs
}

func describeOutcome(o golden.Outcome) string {
	if o.Result == corpus.OutcomeFailed {
		return fmt.Sprintf("failed (exit %d, %s)", o.ExitCode, o.Class)
	}
	return o.Result
}

func messageNote(want, got golden.Outcome) string {
	var parts []string
	if want.Message != "" {
		parts = append(parts, fmt.Sprintf("kaniko: %q", want.Message))
	}
	if got.Message != "" {
		parts = append(parts, fmt.Sprintf("kiln: %q", got.Message))
	}
	if len(parts) == 0 {
		return ""
	}
	return " — " + strings.Join(parts, "; ")
}

// configDiff lists differing config fields as JSON paths, history as a
// summary per attribute (its entries rarely align one to one).
func configDiff(want, got *inspect.Image) []string {
	var diffs []string
	wc, gc := want.Config, got.Config
	wc.History, gc.History = nil, nil
	jsonDiff("", toJSON(wc), toJSON(gc), &diffs)
	diffs = append(diffs, historyDiff(want.Config.History, got.Config.History)...)
	return limit(diffs)
}

// historyDiff compares the history's created_by sequence, then comments,
// empty-layer markers and dates as counts.
func historyDiff(want, got []inspect.History) []string {
	if reflect.DeepEqual(want, got) {
		return nil
	}
	var diffs []string
	field := func(name string, of func(inspect.History) string) {
		w, g := historyColumn(want, of), historyColumn(got, of)
		if w != g {
			diffs = append(diffs, fmt.Sprintf("history %s: kaniko %s; kiln %s", name, w, g))
		}
	}
	field("created_by", func(h inspect.History) string { return h.CreatedBy })
	field("author", func(h inspect.History) string { return h.Author })
	field("comment", func(h inspect.History) string { return h.Comment })
	count := func(name string, of func(inspect.History) bool) {
		w, g := countOf(want, of), countOf(got, of)
		if w != g {
			diffs = append(diffs, fmt.Sprintf("history %s: kaniko %d of %d entries, kiln %d of %d", name, w, len(want), g, len(got)))
		}
	}
	count("empty_layer", func(h inspect.History) bool { return h.EmptyLayer })
	count("dated", func(h inspect.History) bool { return h.Dated })
	if len(diffs) == 0 {
		diffs = append(diffs, "history: empty_layer or dated on other entries")
	}
	return diffs
}

func historyColumn(history []inspect.History, of func(inspect.History) string) string {
	values := make([]string, len(history))
	for i, h := range history {
		values[i] = fmt.Sprintf("%q", of(h))
	}
	const maxLen = 600
	s := "[" + strings.Join(values, ", ") + "]"
	if len(s) > maxLen {
		s = s[:maxLen] + "…"
	}
	return s
}

func countOf(history []inspect.History, of func(inspect.History) bool) int {
	n := 0
	for _, h := range history {
		if of(h) {
			n++
		}
	}
	return n
}

func toJSON(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<unencodable: %v>", err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return fmt.Sprintf("<undecodable: %v>", err)
	}
	return out
}

func jsonDiff(at string, want, got any, diffs *[]string) {
	if reflect.DeepEqual(want, got) {
		return
	}
	wm, wok := want.(map[string]any)
	gm, gok := got.(map[string]any)
	if wok && gok {
		keys := map[string]bool{}
		for k := range wm {
			keys[k] = true
		}
		for k := range gm {
			keys[k] = true
		}
		for _, k := range sortedKeys(keys) {
			jsonDiff(joinPath(at, k), wm[k], gm[k], diffs)
		}
		return
	}
	*diffs = append(*diffs, fmt.Sprintf("%s: kaniko %s, kiln %s", at, compactJSON(want), compactJSON(got)))
}

func joinPath(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func compactJSON(v any) string {
	if v == nil {
		return "(absent)"
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	const maxLen = 160
	if len(data) > maxLen {
		return string(data[:maxLen]) + "…"
	}
	return string(data)
}

// filesystemDiff compares the flattened filesystems. The golden stores only
// the digest, so its tree is rebuilt from its listed layers; a layer listed
// only by digest is taken from kiln's image when kiln has the same layer.
func filesystemDiff(want, got *inspect.Image) []string {
	if want.FilesystemDigest == got.FilesystemDigest {
		return nil
	}
	var layers [][]inspect.Entry
	for i, l := range want.Layers {
		switch {
		case l.Entries != nil || l.EntryCount == 0:
			layers = append(layers, l.Entries)
		case i < len(got.Layers) && got.Layers[i].EntriesDigest == l.EntriesDigest:
			layers = append(layers, got.Layers[i].Entries)
		default:
			return []string{fmt.Sprintf("filesystem digest differs; the golden lists no entries for layer %d (%d entries), so paths cannot be named", i, l.EntryCount)}
		}
	}
	return limit(entriesDiff(inspect.Flatten(layers), got.Filesystem))
}

// layersDiff compares layer count and each layer's entry list in order.
func layersDiff(want, got *inspect.Image) []string {
	var diffs []string
	if len(want.Layers) != len(got.Layers) {
		diffs = append(diffs, fmt.Sprintf("layer count: kaniko %d, kiln %d", len(want.Layers), len(got.Layers)))
	}
	for i := range min(len(want.Layers), len(got.Layers)) {
		w, g := want.Layers[i], got.Layers[i]
		if w.EntriesDigest == g.EntriesDigest {
			continue
		}
		if w.Entries == nil && w.EntryCount > 0 {
			diffs = append(diffs, fmt.Sprintf("layer %d: entries differ (kaniko %d entries, not listed in the golden; kiln %d)", i, w.EntryCount, g.EntryCount))
			continue
		}
		d := entriesDiff(w.Entries, g.Entries)
		if len(d) == 0 {
			d = []string{"same entries in a different archive order"}
		}
		for _, line := range d {
			diffs = append(diffs, fmt.Sprintf("layer %d: %s", i, line))
		}
	}
	if len(want.Layers) != len(got.Layers) {
		diffs = append(diffs, layerSummaries(want, got)...)
	}
	return limit(diffs)
}

// layerSummaries show both layer lists side by side when their counts differ,
// since index-by-index comparison is then misleading.
func layerSummaries(want, got *inspect.Image) []string {
	var out []string
	for _, side := range []struct {
		name string
		img  *inspect.Image
	}{{"kaniko", want}, {"kiln", got}} {
		var parts []string
		for i, l := range side.img.Layers {
			parts = append(parts, fmt.Sprintf("%d:%s", i, layerSummary(l)))
		}
		out = append(out, fmt.Sprintf("%s layers: %s", side.name, strings.Join(parts, " | ")))
	}
	return out
}

func layerSummary(l inspect.Layer) string {
	if l.Entries == nil {
		return fmt.Sprintf("%d entries", l.EntryCount)
	}
	var paths []string
	for _, e := range l.Entries {
		paths = append(paths, e.Path)
	}
	const shown = 4
	if len(paths) > shown {
		return strings.Join(paths[:shown], ",") + fmt.Sprintf(",…(%d)", len(paths))
	}
	return strings.Join(paths, ",")
}

func digestDiff(want, got *inspect.Image) []string {
	if want.ManifestDigest == got.ManifestDigest {
		return nil
	}
	diffs := []string{fmt.Sprintf("manifest digest: kaniko %s, kiln %s", want.ManifestDigest, got.ManifestDigest)}
	if want.ManifestType != got.ManifestType {
		diffs = append(diffs, fmt.Sprintf("manifest media type: kaniko %s, kiln %s", want.ManifestType, got.ManifestType))
	}
	if !slices.Equal(want.LayerMediaTypes, got.LayerMediaTypes) {
		diffs = append(diffs, fmt.Sprintf("layer media types: kaniko %v, kiln %v", want.LayerMediaTypes, got.LayerMediaTypes))
	}
	if want.ConfigDigest != got.ConfigDigest {
		diffs = append(diffs, "config digest differs (timestamps or fields outside the normalised config)")
	}
	for i := range min(len(want.DiffIDs), len(got.DiffIDs)) {
		if want.DiffIDs[i] != got.DiffIDs[i] && want.Layers[i].EntriesDigest == got.Layers[i].EntriesDigest {
			diffs = append(diffs, fmt.Sprintf("layer %d: same entries, different tar bytes (headers not compared: mtime, uname/gname, format)", i))
		}
	}
	return limit(diffs)
}

// entriesDiff names paths present on one side only and, for shared paths,
// which attributes differ.
func entriesDiff(want, got []inspect.Entry) []string {
	byPath := map[string]inspect.Entry{}
	for _, e := range want {
		byPath[e.Path] = e
	}
	var diffs []string
	seen := map[string]bool{}
	for _, g := range got {
		seen[g.Path] = true
		w, ok := byPath[g.Path]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("only in kiln: %s (%s)", g.Path, describeEntry(g)))
			continue
		}
		if fields := entryFieldDiff(w, g); fields != "" {
			diffs = append(diffs, fmt.Sprintf("%s: %s", g.Path, fields))
		}
	}
	for _, w := range want {
		if !seen[w.Path] {
			diffs = append(diffs, fmt.Sprintf("only in kaniko: %s (%s)", w.Path, describeEntry(w)))
		}
	}
	return diffs
}

func describeEntry(e inspect.Entry) string {
	s := e.Type
	if e.Mode != "" {
		s += " " + e.Mode
	}
	if e.Link != "" {
		s += " -> " + e.Link
	}
	return s
}

func entryFieldDiff(w, g inspect.Entry) string {
	var parts []string
	add := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			parts = append(parts, fmt.Sprintf("%s %v→%v", name, a, b))
		}
	}
	add("type", w.Type, g.Type)
	add("mode", w.Mode, g.Mode)
	add("uid", w.UID, g.UID)
	add("gid", w.GID, g.GID)
	add("size", w.Size, g.Size)
	if w.SHA256 != g.SHA256 {
		parts = append(parts, "content differs")
	}
	add("link", w.Link, g.Link)
	add("xattrs", w.Xattrs, g.Xattrs)
	add("dev", w.Dev, g.Dev)
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ") + " (kaniko→kiln)"
}

func limit(diffs []string) []string {
	if len(diffs) <= maxDiffLines {
		return diffs
	}
	return append(diffs[:maxDiffLines:maxDiffLines], fmt.Sprintf("… and %d more", len(diffs)-maxDiffLines))
}
