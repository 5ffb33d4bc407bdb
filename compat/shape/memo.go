package shape

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"runtime"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// Memo remembers layers shaped by earlier builds, so that a rebuild whose
// BuildKit layers come from a cache does not re-tar them. Shaping the same
// inputs always gives the same bytes; a key names all of those inputs.
type Memo interface {
	// Recall returns the entry stored under key and a layer serving its
	// shaped blob (nil for an entry without a layer).
	Recall(key string) (*MemoEntry, v1.Layer, bool)
	// Remember is told every entry this build used, recalled or new; l
	// is its shaped layer, nil when Kaniko writes none.
	Remember(e *MemoEntry, l v1.Layer)
	// Index returns the header index (see indexSizeKey) of the BuildKit
	// layer with digest layer, if known; shaping then reads the index
	// instead of the layer wherever headers suffice.
	Index(layer v1.Hash) (v1.Layer, bool)
	// RememberIndex is given the index of a layer shaping read.
	RememberIndex(layer v1.Hash, index v1.Layer)
}

// MemoEntry is one shaped layer and what its reuse depends on besides its key.
type MemoEntry struct {
	Key string `json:"key"`
	// CreatedBy names the instruction, for logs only (not part of the key).
	CreatedBy string `json:"createdBy,omitempty"`
	// Layer describes the shaped blob; nil when Kaniko writes no layer.
	Layer *MemoLayer `json:"layer,omitempty"`
	// Context is every build context lookup the rules made, asked again
	// before reuse: the context is no BuildKit layer, so no key covers it.
	Context []ContextAnswer `json:"context,omitempty"`
	// Fixes are the metadata corrections in force after this layer, which
	// the layers above it apply.
	Fixes []MemoFix `json:"fixes,omitempty"`
	// Moved are the layerWriter's moved paths after this layer.
	Moved []string `json:"moved,omitempty"`
}

// MemoLayer is a shaped layer's descriptor.
type MemoLayer struct {
	Digest    v1.Hash         `json:"digest"`
	DiffID    v1.Hash         `json:"diffID"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType"`
}

// ContextAnswer is one lookup of Options.ContextSource; Source nil means
// the path did not exist.
type ContextAnswer struct {
	Path   string  `json:"path"`
	Source *Source `json:"source,omitempty"`
}

// MemoFix is one entry of the fixes map: Path had From, the rules made it To.
type MemoFix struct {
	Path string   `json:"path"`
	From MemoMeta `json:"from"`
	To   MemoMeta `json:"to"`
}

// MemoMeta is the metadata a fix changes.
type MemoMeta struct {
	Uid  int   `json:"uid"`
	Gid  int   `json:"gid"`
	Mode int64 `json:"mode"`
}

// memoFormat changes whenever the same inputs may shape to other bytes
// without kiln's version changing (Options.MemoVersion covers releases).
const memoFormat = "kiln shape memo v1"

// memoState keys the layers of one shaping: prefix covers the options,
// chain everything the fixes map depends on so far (every earlier
// instruction layer's key and context answers).
type memoState struct {
	memo   Memo
	prefix string
	chain  string
}

func newMemoState(opts Options, stamp *time.Time, ignore []string) *memoState {
	if opts.Memo == nil {
		return nil
	}
	h := sha256.New()
	field(h, "format", memoFormat)
	field(h, "kiln", opts.MemoVersion)
	field(h, "go", runtime.Version()) // compress/gzip's output is the toolchain's
	if stamp != nil {
		field(h, "stamp", stamp.UTC().Format(time.RFC3339Nano))
	}
	field(h, "level", fmt.Sprint(opts.CompressionLevel))
	field(h, "context", fmt.Sprint(opts.ContextSource != nil))
	for _, p := range ignore {
		field(h, "ignore", p)
	}
	prefix := hex.EncodeToString(h.Sum(nil))
	return &memoState{memo: opts.Memo, prefix: prefix, chain: prefix}
}

// field writes one length-prefixed name/value pair, so that no two
// different sequences hash alike.
func field(h hash.Hash, name, value string) {
	fmt.Fprintf(h, "%d:%s=%d:%s;", len(name), name, len(value), value)
}

// instructionKey covers every input of shapeInstruction for layers[idxs]:
//   - prefix: kiln's and Go's versions (the rules, the tar and gzip code),
//     the --reproducible stamp, the compression level, the ignored paths,
//     whether the build context is known;
//   - chain: the fixes map the rules read and extend, which earlier
//     instruction layers left;
//   - every layer up to the last source by digest: the sources' bytes, and
//     the layers below, which the lower tree and lower files come from;
//   - which of them are the sources, and the last one's media type (the
//     output's);
//   - the instruction with all its fields, and the stage's VOLUMEs;
//   - whether it is a COPY BuildKit built with --link (asPlainCopy).
//
// The build context is checked instead: MemoEntry.Context.
func (m *memoState) instructionKey(layers []v1.Layer, idxs []int, cmd instructions.Command, volumes []string, linked bool) (string, error) {
	last := idxs[len(idxs)-1]
	h := sha256.New()
	field(h, "chain", m.chain)
	for i, l := range layers[:last+1] {
		d, err := l.Digest()
		if err != nil {
			return "", err
		}
		field(h, fmt.Sprint("layer", i), d.String())
	}
	for _, idx := range idxs {
		field(h, "source", fmt.Sprint(idx))
	}
	mt, err := layers[last].MediaType()
	if err != nil {
		return "", err
	}
	field(h, "mediatype", string(mt))
	command, err := commandKey(cmd)
	if err != nil {
		return "", err
	}
	field(h, "command", command)
	for _, v := range volumes {
		field(h, "volume", v)
	}
	if linked {
		field(h, "linked", "true")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// baseKey covers a base layer re-tarred under --reproducible: its bytes
// and the stamp (in prefix).
func (m *memoState) baseKey(l v1.Layer) (string, error) {
	d, err := l.Digest()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	field(h, "prefix", m.prefix)
	field(h, "base", d.String())
	return hex.EncodeToString(h.Sum(nil)), nil
}

// advance adds a shaped instruction layer to the chain.
func (m *memoState) advance(e *MemoEntry) error {
	answers, err := json.Marshal(e.Context)
	if err != nil {
		return err
	}
	h := sha256.New()
	field(h, "key", e.Key)
	field(h, "context", string(answers))
	m.chain = hex.EncodeToString(h.Sum(nil))
	return nil
}

// commandKey is the instruction with every exported field (the rules read
// no unexported one but volumeDir's path), so two instructions share a key
// only when the rules cannot tell them apart.
func commandKey(cmd instructions.Command) (string, error) {
	var v any = cmd
	if vd, ok := cmd.(volumeDir); ok {
		v = struct {
			Volume *instructions.VolumeCommand
			Path   string
		}{vd.VolumeCommand, vd.path}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("keying %T: %w", cmd, err)
	}
	return fmt.Sprintf("%T%s", cmd, b), nil
}

// contextRecorder wraps Options.ContextSource and keeps its answers.
type contextRecorder struct {
	source  func(rel string) (Source, error)
	answers []ContextAnswer
	seen    map[string]bool
}

func (r *contextRecorder) lookup(rel string) (Source, error) {
	src, err := r.source(rel)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return src, err
	}
	if !r.seen[rel] {
		r.seen[rel] = true
		a := ContextAnswer{Path: rel}
		if err == nil {
			a.Source = &src
		}
		r.answers = append(r.answers, a)
	}
	return src, err
}

// contextUnchanged asks every recorded lookup again.
func contextUnchanged(source func(rel string) (Source, error), answers []ContextAnswer) bool {
	for _, a := range answers {
		if source == nil {
			return false
		}
		src, err := source(a.Path)
		switch {
		case a.Source == nil:
			if !errors.Is(err, fs.ErrNotExist) {
				return false
			}
		case err != nil || src != *a.Source:
			return false
		}
	}
	return true
}

func (f fixes) memo() []MemoFix {
	out := make([]MemoFix, 0, len(f))
	for p, fix := range f {
		out = append(out, MemoFix{Path: p, From: fix[0].memo(), To: fix[1].memo()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func fixesFromMemo(list []MemoFix) fixes {
	f := fixes{}
	for _, m := range list {
		f[m.Path] = [2]meta{m.From.meta(), m.To.meta()}
	}
	return f
}

func (m meta) memo() MemoMeta { return MemoMeta{Uid: m.uid, Gid: m.gid, Mode: m.mode} }
func (m MemoMeta) meta() meta { return meta{uid: m.Uid, gid: m.Gid, mode: m.Mode} }

// MemoLayerOf describes a layer by what its manifest and config say.
func MemoLayerOf(l v1.Layer) (MemoLayer, error) {
	var d MemoLayer
	var err error
	if d.Digest, err = l.Digest(); err != nil {
		return d, err
	}
	if d.DiffID, err = l.DiffID(); err != nil {
		return d, err
	}
	if d.Size, err = l.Size(); err != nil {
		return d, err
	}
	d.MediaType, err = l.MediaType()
	return d, err
}
