// Package shape turns the image BuildKit exported into the image Kaniko
// would have produced for the same Dockerfile: Kaniko's layers (no empty
// ones, Kaniko's tar form, no build-sandbox artefacts), Kaniko's history and,
// under --reproducible, go-containerregistry's mutate.Canonical applied the
// way Kaniko applies it, but streaming through files instead of memory.
package shape

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// KanikoAuthor is the author of the history entries Kaniko adds.
const KanikoAuthor = "kaniko"

// Options describe the invocation the image was built for.
type Options struct {
	// WorkDir receives one file per rewritten layer. The returned image
	// reads them, so WorkDir must outlive its publishing.
	WorkDir string
	// Reproducible is --reproducible.
	Reproducible bool
	// SourceDateEpoch (seconds), with Reproducible, replaces Kaniko's zero
	// time in layers and config (a kiln extension; nil means Kaniko's form).
	SourceDateEpoch *int64
	// Dockerfile is the Dockerfile's content; its instruction texts become
	// created_by. Without it the texts are derived from BuildKit's.
	Dockerfile []byte
	Target     string   // --target
	BuildArgs  []string // --build-arg KEY=VALUE, to resolve FROM <stage> names
	// IgnorePaths are --ignore-path values, plus /var/run with
	// --ignore-var-run: Kaniko leaves them out of every layer it creates.
	IgnorePaths []string
	// SingleSnapshot is --single-snapshot: one layer per stage.
	SingleSnapshot bool
	// VolumeDirs says BuildKit built the Dockerfile with the COPYs
	// compat.WithVolumeDirs inserts; what they create joins Kaniko's next
	// snapshot of the stage, as Kaniko's VOLUME directories do.
	VolumeDirs bool
	// ContextSource describes a path of the build context (relative,
	// slash-separated) as Kaniko's COPY sees it; nil skips the rules that
	// need the source (ownership and mode of COPY's created directories,
	// symlink sources copied as links).
	ContextSource func(rel string) (Source, error)
	// ContextMatches reports whether a COPY/ADD source (a relative path or
	// glob, slash-separated) matches any path of the build context that
	// the .dockerignore keeps; nil skips the rule that needs it (Kaniko's
	// whole-filesystem layer for a COPY that copies nothing).
	ContextMatches func(pattern string) (bool, error)
	// CompressionLevel is --compression-level for rewritten layers without
	// --reproducible; <= 0 means gzip BestSpeed, Kaniko's default.
	CompressionLevel int
	// Memo, when set, supplies layers shaped by earlier builds and learns
	// this build's; MemoVersion (kiln's version) is part of every key.
	Memo        Memo
	MemoVersion string
	// LinkedCopies says BuildKit built the compat.LinkableCopies of the
	// target stage with --link (compat.WithLinkedCopies): their layers are
	// made a plain COPY's, or Kaniko fails with ErrLinkedCopyDiffers.
	LinkedCopies bool
	// LayerHeaders, when set, gives the tar headers of a layer blob the
	// build engine already read (the embedded engine notes them while
	// unpacking), so shaping need not inflate it again.
	LayerHeaders func(blob v1.Hash) ([]*tar.Header, bool)
}

// Kaniko reshapes img (BuildKit's export) into Kaniko's form.
func Kaniko(img v1.Image, opts Options) (v1.Image, error) {
	if opts.WorkDir == "" {
		return nil, errors.New("shape: no work directory")
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading image layers: %w", err)
	}
	layers = withConfigDiffIDs(layers, cf)
	c := &chain{used: map[string]bool{}}
	if opts.Dockerfile != nil {
		if c, err = readChain(opts.Dockerfile, opts.Target, opts.BuildArgs, opts.VolumeDirs, opts.LinkedCopies); err != nil {
			return nil, fmt.Errorf("reading the Dockerfile's instructions: %w", err)
		}
	}
	s := &shaper{opts: opts, layers: layers, chain: c, plan: planHistory(cf.History, c.layerTexts), env: cf.Config.Env, volumeStage: -1}
	s.writer = &layerWriter{workDir: opts.WorkDir, stamp: s.stamp(), ignore: cleanPaths(opts.IgnorePaths), contextSource: opts.ContextSource, fixes: fixes{},
		linked: c.linked, workingDir: cf.Config.WorkingDir}
	s.memo = newMemoState(opts, s.writer.stamp, s.writer.ignore)
	if opts.Memo != nil {
		s.writer.indexSource = s.indexSource
	}
	addendums, err := s.addendums(cf.History)
	if err != nil {
		return nil, err
	}
	out, err := mutate.Append(empty.Image, addendums...)
	if err != nil {
		return nil, err
	}
	return s.finish(img, out, cf)
}

type shaper struct {
	opts   Options
	layers []v1.Layer
	chain  *chain
	plan   historyPlan
	writer *layerWriter
	memo   *memoState // nil without Options.Memo

	lower      tree // filesystem below layers[lowerUpTo]
	lowerUpTo  int
	layerIndex int // next layer of img to consume

	env []string // the image's ENV, to expand VOLUME paths
	// volumeStage is the stage the VOLUMEs below belong to; volumes are
	// its VOLUME paths so far and pendingVolumes the layers of their
	// directory COPYs not yet merged into a Kaniko layer.
	volumeStage    int
	volumes        []string
	pendingVolumes []int

	// indexed holds the paths of the layers the lower tree took from a
	// header index, by layer: file data is read only from a layer that
	// has the file.
	indexed map[int]map[string]bool
}

// trackVolumes forgets the VOLUMEs of an earlier stage: Kaniko's list
// starts again with each stage's filesystem.
func (s *shaper) trackVolumes(stage int) {
	if stage != s.volumeStage {
		s.volumeStage, s.volumes, s.pendingVolumes = stage, nil, nil
	}
}

// volumePath expands a VOLUME path with the ARGs declared before it and the
// image's ENV (which wins), as Kaniko does.
func (s *shaper) volumePath(raw string, args []string) string {
	expanded, _, err := shell.NewLex('\\').ProcessWord(raw, shell.EnvsFromSlice(append(slices.Clone(args), s.env...)))
	if err != nil {
		return cleanPath(raw)
	}
	return cleanPath(expanded)
}

// stamp is the time --reproducible writes everywhere, or nil.
func (s *shaper) stamp() *time.Time {
	if !s.opts.Reproducible {
		return nil
	}
	t := time.Time{}
	if s.opts.SourceDateEpoch != nil {
		t = time.Unix(*s.opts.SourceDateEpoch, 0).UTC()
	}
	return &t
}

// addendums walks BuildKit's history and layers together and yields
// Kaniko's: base entries kept, BuildKit's metadata-only entries dropped,
// each layer instruction with Kaniko's text, or dropped with its layer when
// Kaniko would have seen no change. With --single-snapshot a stage's layers
// become one, named after the stage's last instruction.
func (s *shaper) addendums(history []v1.History) ([]mutate.Addendum, error) {
	var adds []mutate.Addendum
	var group []int // layer indexes of the pending --single-snapshot stage
	var groupText string
	var groupCmd instructions.Command
	groupN := -1
	lastStage := -1
	stageLayers := map[int][]v1.Layer{} // Kaniko's layers so far, by stage
	add := func(l v1.Layer, createdBy string) {
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{Author: KanikoAuthor, CreatedBy: createdBy}})
		stageLayers[lastStage] = append(stageLayers[lastStage], l)
	}
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		cmd := groupCmd
		if len(group) > 1 {
			cmd = nil // a merged stage: per-instruction rules do not apply
		}
		s.writer.volumes = slices.Clone(s.volumes)
		idxs := group
		switch cmd.(type) {
		case *instructions.RunCommand:
			// Kaniko's RUN snapshot leaves out VOLUME directories it did
			// not touch; BuildKit's diff has the ones the RUN changed.
		default:
			idxs = append(s.pendingVolumes, group...)
		}
		l, walked, err := s.nothingCopiedLayer(groupN, group[0]+1, stageLayers[lastStage])
		if !walked && err == nil {
			l, err = s.instructionLayer(idxs, cmd, groupText)
		}
		s.pendingVolumes = nil
		if err != nil {
			return fmt.Errorf("%s: %w", groupText, err)
		}
		if l != nil {
			add(l, groupText)
		}
		group = nil
		return nil
	}
	for i, h := range history {
		text, kaniko := s.plan.Kaniko[i]
		own := i >= s.plan.Start
		if h.EmptyLayer {
			if !own {
				adds = append(adds, mutate.Addendum{History: h})
				continue
			}
			// BuildKit found nothing to copy; Kaniko may still write a layer.
			if n, ok := s.plan.Command[i]; ok && kaniko {
				if err := flush(); err != nil {
					return nil, err
				}
				lastStage = s.chain.layerStage[n]
				l, _, err := s.nothingCopiedLayer(n, s.layerIndex, stageLayers[lastStage])
				if err != nil {
					return nil, fmt.Errorf("%s: %w", text, err)
				}
				if l != nil {
					add(l, text)
				}
			}
			continue
		}
		if s.layerIndex >= len(s.layers) {
			return nil, fmt.Errorf("image history lists more layers than the image has (%d)", len(s.layers))
		}
		idx := s.layerIndex
		s.layerIndex++
		if !kaniko {
			if err := flush(); err != nil {
				return nil, err
			}
			l, err := s.baseLayer(s.layers[idx])
			if err != nil {
				return nil, err
			}
			adds = append(adds, mutate.Addendum{Layer: l, History: h})
			continue
		}
		var cmd instructions.Command
		stage, n := -1, -1
		if c, ok := s.plan.Command[i]; ok {
			n, cmd, stage = c, s.chain.layerCmds[c], s.chain.layerStage[c]
		}
		if !s.opts.SingleSnapshot || stage < 0 || stage != lastStage {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		lastStage = stage
		if stage >= 0 {
			s.trackVolumes(stage)
		}
		if vol, ok := cmd.(volumeDir); ok {
			s.volumes = append(s.volumes, s.volumePath(vol.path, vol.args))
			if s.opts.SingleSnapshot {
				group = append(group, idx)
			} else {
				s.pendingVolumes = append(s.pendingVolumes, idx)
			}
			continue
		}
		group, groupText, groupCmd, groupN = append(group, idx), text, cmd, n
		if !s.opts.SingleSnapshot || stage < 0 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for ; s.layerIndex < len(s.layers); s.layerIndex++ {
		l, err := s.baseLayer(s.layers[s.layerIndex])
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l})
	}
	return adds, nil
}

// baseLayer passes a layer Kaniko did not create through, re-tarred with
// zero times under --reproducible (mutate.Canonical re-tars base layers).
func (s *shaper) baseLayer(l v1.Layer) (v1.Layer, error) {
	stamp := s.stamp()
	if stamp == nil {
		return l, nil
	}
	if s.memo == nil {
		return s.retimeBase(l, *stamp)
	}
	key, err := s.memo.baseKey(l)
	if err != nil {
		return nil, err
	}
	if e, shaped, ok := s.memo.memo.Recall(key); ok && e.Layer != nil && shaped != nil {
		s.memo.memo.Remember(e, shaped)
		return shaped, nil
	}
	shaped, err := s.retimeBase(l, *stamp)
	if err != nil {
		return nil, err
	}
	desc, err := MemoLayerOf(shaped)
	if err != nil {
		return nil, err
	}
	e := &MemoEntry{Key: key, CreatedBy: "base layer", Layer: &desc}
	s.memo.memo.Remember(e, shaped)
	return shaped, nil
}

func (s *shaper) retimeBase(l v1.Layer, stamp time.Time) (v1.Layer, error) {
	file, err := retime(l, stamp, s.opts.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("re-tarring a base layer: %w", err)
	}
	return gzipLayer(file, types.DockerLayer, 0)
}

// instructionLayer is shapeInstruction, through the memo when there is
// one: a recalled layer is reused when the build context still answers as
// it did, and restores the fixes its shaping left for the layers above.
func (s *shaper) instructionLayer(idxs []int, cmd instructions.Command, createdBy string) (v1.Layer, error) {
	if s.memo == nil {
		return s.shapeInstruction(idxs, cmd)
	}
	cp, _ := cmd.(*instructions.CopyCommand)
	key, err := s.memo.instructionKey(s.layers, idxs, cmd, s.writer.volumes, s.writer.linked[cp])
	if err != nil {
		// Later layers depend on this one's fixes, which no key would cover.
		s.memo = nil
		return s.shapeInstruction(idxs, cmd)
	}
	memo := s.memo.memo
	if e, l, ok := memo.Recall(key); ok && (e.Layer == nil) == (l == nil) && contextUnchanged(s.opts.ContextSource, e.Context) {
		s.writer.fixes = fixesFromMemo(e.Fixes)
		s.writer.moved = slices.Clone(e.Moved)
		memo.Remember(e, l)
		return l, s.memo.advance(e)
	}
	rec := &contextRecorder{source: s.opts.ContextSource, seen: map[string]bool{}}
	if s.opts.ContextSource != nil {
		s.writer.contextSource = rec.lookup
		defer func() { s.writer.contextSource = s.opts.ContextSource }()
	}
	l, err := s.shapeInstruction(idxs, cmd)
	if err != nil {
		return nil, err
	}
	e := &MemoEntry{Key: key, CreatedBy: createdBy, Context: rec.answers, Fixes: s.writer.fixes.memo(), Moved: slices.Clone(s.writer.moved)}
	if l != nil {
		desc, err := MemoLayerOf(l)
		if err != nil {
			return nil, err
		}
		e.Layer = &desc
	}
	memo.Remember(e, l)
	return l, s.memo.advance(e)
}

// shapeInstruction re-tars the layers idxs (one, or a stage's under
// --single-snapshot) as one layer in Kaniko's form; nil when empty. cmd is
// the (last) instruction, nil when unknown.
func (s *shaper) shapeInstruction(idxs []int, cmd instructions.Command) (v1.Layer, error) {
	first := idxs[0]
	srcs := make([]v1.Layer, len(idxs))
	for i, idx := range idxs {
		srcs[i] = s.layers[idx]
	}
	s.writer.lower = func() (tree, error) { return s.lowerAt(first) }
	s.writer.lowerFile = func(p string, w io.Writer) error { return fileFromLayers(s.layers[:first], p, w, s.indexLacks) }
	file, ok, err := s.writer.write(srcs, cmd)
	if err != nil || !ok {
		return nil, err
	}
	return s.layerFromFile(file, idxs[len(idxs)-1])
}

// layerFromFile compresses a shaped tar as Kaniko would: gzip with Kaniko's
// bytes under --reproducible, else in the media type of BuildKit's layer idx.
func (s *shaper) layerFromFile(file string, idx int) (v1.Layer, error) {
	if s.opts.Reproducible {
		return gzipLayer(file, types.DockerLayer, 0)
	}
	mt, err := s.layers[idx].MediaType()
	if err != nil {
		return nil, err
	}
	// Exported uncompressed only to spare compressing it twice (gzip meant).
	switch mt {
	case types.DockerUncompressedLayer:
		mt = types.DockerLayer
	case types.OCIUncompressedLayer:
		mt = types.OCILayer
	}
	if isGzipLayer(mt) {
		return fastGzipLayer(file, mt, s.opts.CompressionLevel)
	}
	layerOpts := []tarball.LayerOption{tarball.WithMediaType(mt)}
	if s.opts.CompressionLevel > 0 {
		layerOpts = append(layerOpts, tarball.WithCompressionLevel(s.opts.CompressionLevel))
	}
	if strings.Contains(string(mt), "zstd") {
		layerOpts = append(layerOpts, tarball.WithCompression("zstd"))
	}
	return tarball.LayerFromFile(file, layerOpts...)
}

// lowerAt is the filesystem below layer idx, built incrementally (callers
// ask for increasing idx).
func (s *shaper) lowerAt(idx int) (tree, error) {
	if s.lower == nil || s.lowerUpTo > idx {
		s.lower, s.lowerUpTo = tree{}, 0
	}
	for ; s.lowerUpTo < idx; s.lowerUpTo++ {
		if err := s.applyLower(s.lowerUpTo); err != nil {
			return nil, fmt.Errorf("reading lower layers: %w", err)
		}
	}
	return s.lower, nil
}

// finish sets the config: Kaniko keeps BuildKit's (the base config plus the
// Dockerfile's changes); --reproducible keeps only what mutate.Canonical
// keeps, with every time stamped.
func (s *shaper) finish(src, out v1.Image, cf *v1.ConfigFile) (v1.Image, error) {
	built, err := out.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	s.kanikoConfig(&cf.Config)
	stamp := s.stamp()
	if stamp == nil {
		cfg := cf.DeepCopy()
		cfg.RootFS, cfg.History = built.RootFS, built.History
		shaped, err := mutate.ConfigFile(out, cfg)
		if err != nil {
			return nil, err
		}
		return withMediaTypes(src, shaped)
	}
	cfg := built.DeepCopy()
	cfg.Architecture, cfg.OS, cfg.OSVersion = cf.Architecture, cf.OS, cf.OSVersion
	cfg.Config = cf.Config
	cfg.Config.Hostname = ""
	cfg.Created = v1.Time{Time: *stamp}
	for i := range cfg.History {
		cfg.History[i].Created = v1.Time{Time: *stamp}
		cfg.History[i].Author = ""
	}
	return mutate.ConfigFile(out, cfg)
}

// kanikoConfig undoes what BuildKit sets in the container config where
// Kaniko does not: ArgsEscaped (Kaniko's CMD clears it, its ENTRYPOINT
// keeps the base's, which BuildKit overwrote) and WorkingDir "/" on a
// scratch base without WORKDIR.
func (s *shaper) kanikoConfig(cfg *v1.Config) {
	if s.chain.used["CMD"] || s.chain.used["ENTRYPOINT"] {
		cfg.ArgsEscaped = false
	}
	if s.chain.scratch && !s.chain.used["WORKDIR"] && cfg.WorkingDir == "/" {
		cfg.WorkingDir = ""
	}
	s.keepPortRanges(cfg)
}

// keepPortRanges: Kaniko records `EXPOSE 8000-8002` as the one port
// "8000-8002/tcp", BuildKit as each port of the range.
func (s *shaper) keepPortRanges(cfg *v1.Config) {
	for _, r := range s.chain.portRanges {
		expanded, _, err := shell.NewLex('\\').ProcessWord(r.port, shell.EnvsFromSlice(append(slices.Clone(r.args), s.env...)))
		if err != nil {
			continue
		}
		ports, proto, _ := strings.Cut(expanded, "/")
		if proto == "" {
			proto = "tcp"
		}
		first, last, isRange := strings.Cut(ports, "-")
		from, err1 := strconv.Atoi(first)
		to, err2 := strconv.Atoi(last)
		if !isRange || err1 != nil || err2 != nil || from > to {
			continue
		}
		if _, built := cfg.ExposedPorts[fmt.Sprintf("%d/%s", from, proto)]; !built {
			continue
		}
		for p := from; p <= to; p++ {
			delete(cfg.ExposedPorts, fmt.Sprintf("%d/%s", p, proto))
		}
		cfg.ExposedPorts[ports+"/"+proto] = struct{}{}
	}
}

// withMediaTypes keeps the manifest family BuildKit chose (Kaniko follows
// the base image's).
func withMediaTypes(src, shaped v1.Image) (v1.Image, error) {
	mt, err := src.MediaType()
	if err != nil {
		return nil, err
	}
	if mt == types.OCIManifestSchema1 {
		return mutate.ConfigMediaType(mutate.MediaType(shaped, mt), types.OCIConfigJSON), nil
	}
	return shaped, nil
}

func cleanPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		if c := cleanPath(p); c != "" {
			out = append(out, c)
		}
	}
	return out
}
