// Package inspect turns an image (from a registry or an OCI layout) into the
// compact, comparable structure the conformance goldens store: digests,
// normalised config, per-layer tar entries and a flattened-filesystem digest.
// It is used for Kaniko's reference images and for kiln's images alike.
package inspect

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Image is the inspected form of one image.
type Image struct {
	ManifestDigest   string   `json:"manifest_digest"`
	ManifestType     string   `json:"manifest_media_type"`
	ConfigDigest     string   `json:"config_digest"`
	LayerMediaTypes  []string `json:"layer_media_types"`
	DiffIDs          []string `json:"diff_ids"`
	Config           Config   `json:"config"`
	Layers           []Layer  `json:"layers"`
	FilesystemDigest string   `json:"filesystem_digest"`
	// Filesystem is the flattened tree, kept only in memory for comparisons.
	Filesystem []Entry `json:"-"`
}

// Config is the image config without timestamps and rootfs (diff_ids are
// kept at the top level).
type Config struct {
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	OSVersion    string    `json:"os.version,omitempty"`
	Variant      string    `json:"variant,omitempty"`
	Author       string    `json:"author,omitempty"`
	History      []History `json:"history"`
	Config       v1.Config `json:"config"`
}

// History is one history entry without its timestamp.
type History struct {
	CreatedBy  string `json:"created_by,omitempty"`
	Author     string `json:"author,omitempty"`
	Comment    string `json:"comment,omitempty"`
	EmptyLayer bool   `json:"empty_layer,omitempty"`
	// Dated is true when created is set to anything but the zero time.
	Dated bool `json:"dated,omitempty"`
}

// Timestamps. This is the one place that knows which parts of an image are
// times. Inspect never records file times (tar mtime, PAX access and change
// times) nor the config's created; a history entry's created is kept only
// as Dated. The digests (manifest, config, diff_ids) cover the times, so a
// comparison that ignores times cannot use them.

// WithoutTimes is img with every recorded time cleared: what stays is what
// an image built without --reproducible must share with Kaniko's.
func (img *Image) WithoutTimes() *Image {
	out := *img
	out.Config.History = slices.Clone(img.Config.History)
	for i := range out.Config.History {
		out.Config.History[i].Dated = false
	}
	return &out
}

// Layer is one layer's tar content in archive order.
type Layer struct {
	DiffID     string `json:"diff_id"`
	EntryCount int    `json:"entry_count"`
	// EntriesDigest covers every entry (see Entry.line) in archive order.
	EntriesDigest string `json:"entries_digest"`
	// Entries is omitted for layers above Options.MaxListedEntries.
	Entries []Entry `json:"entries,omitempty"`
}

// Entry types.
const (
	TypeFile      = "file"
	TypeDir       = "dir"
	TypeSymlink   = "symlink"
	TypeHardlink  = "hardlink"
	TypeChar      = "char"
	TypeBlock     = "block"
	TypeFifo      = "fifo"
	TypeWhiteout  = "whiteout"
	TypeOpaque    = "opaque"
	whiteoutMark  = ".wh."
	opaqueMarkSfx = ".wh..wh..opq"
)

// Entry is one tar entry (or flattened file). Path is as stored, without a
// leading "./" or trailing "/"; Kaniko's root entry stays "/". Mode holds the
// permission, setuid, setgid and sticky bits in octal.
type Entry struct {
	Path   string            `json:"path"`
	Type   string            `json:"type"`
	Mode   string            `json:"mode,omitempty"`
	UID    int               `json:"uid,omitempty"`
	GID    int               `json:"gid,omitempty"`
	Size   int64             `json:"size,omitempty"`
	SHA256 string            `json:"sha256,omitempty"`
	Link   string            `json:"link,omitempty"`
	Xattrs map[string]string `json:"xattrs,omitempty"`
	// Device numbers for char/block devices.
	Dev string `json:"dev,omitempty"`
}

// Options tune what is kept.
type Options struct {
	// MaxListedEntries: layers with more entries keep only count and digest.
	// Zero lists every layer.
	MaxListedEntries int
}

// Remote pulls ref (plain HTTP allowed for insecure registries) and inspects it.
func Remote(ref string, insecure bool, opts Options, ropts ...remote.Option) (*Image, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	img, err := remote.Image(r, ropts...)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	return Inspect(img, opts)
}

// Layout inspects the single image of the OCI layout at dir.
func Layout(dir string, opts Options) (*Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("OCI layout %s: want exactly one manifest in index.json, found %d", dir, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return Inspect(img, opts)
}

// Inspect reads every part of img.
func Inspect(img v1.Image, opts Options) (*Image, error) {
	out := &Image{}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	out.ManifestDigest = digest.String()
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	out.ManifestType = string(mt)
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	out.ConfigDigest = cfgName.String()
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	out.Config = normalizeConfig(cf)
	for _, d := range cf.RootFS.DiffIDs {
		out.DiffIDs = append(out.DiffIDs, d.String())
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	tree := newTree()
	for i, l := range layers {
		lmt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		out.LayerMediaTypes = append(out.LayerMediaTypes, string(lmt))
		diffID, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		entries, err := ReadTar(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, diffID, err)
		}
		layer := Layer{DiffID: diffID.String(), EntryCount: len(entries), EntriesDigest: digestEntries(entries)}
		if opts.MaxListedEntries == 0 || len(entries) <= opts.MaxListedEntries {
			layer.Entries = entries
		}
		out.Layers = append(out.Layers, layer)
		tree.apply(entries)
	}
	out.Filesystem = tree.flatten()
	out.FilesystemDigest = digestEntries(out.Filesystem)
	return out, nil
}

func normalizeConfig(cf *v1.ConfigFile) Config {
	c := Config{
		Architecture: cf.Architecture,
		OS:           cf.OS,
		OSVersion:    cf.OSVersion,
		Variant:      cf.Variant,
		Author:       cf.Author,
		Config:       cf.Config,
	}
	c.History = HistoryOf(cf.History)
	return c
}

// HistoryOf is a config's history in inspected form.
func HistoryOf(history []v1.History) []History {
	var out []History
	for _, h := range history {
		out = append(out, History{
			CreatedBy:  h.CreatedBy,
			Author:     h.Author,
			Comment:    h.Comment,
			EmptyLayer: h.EmptyLayer,
			Dated:      !h.Created.IsZero(),
		})
	}
	return out
}

// ReadTar lists a layer's entries in archive order, hashing file contents.
func ReadTar(r io.Reader) ([]Entry, error) {
	tr := tar.NewReader(r)
	var entries []Entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		e, err := entryOf(hdr, tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", hdr.Name, err)
		}
		entries = append(entries, e)
	}
}

func entryOf(hdr *tar.Header, body io.Reader) (Entry, error) {
	e := Entry{Path: cleanName(hdr.Name)}
	base := path.Base(e.Path)
	switch {
	case base == opaqueMarkSfx:
		e.Type = TypeOpaque
		return e, nil
	case strings.HasPrefix(base, whiteoutMark):
		e.Type = TypeWhiteout
		return e, nil
	}
	e.Mode = fmt.Sprintf("%04o", hdr.Mode&0o7777)
	e.UID, e.GID = hdr.Uid, hdr.Gid
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		e.Type = TypeFile
		h := sha256.New()
		n, err := io.Copy(h, body)
		if err != nil {
			return e, err
		}
		e.Size = n
		e.SHA256 = hex.EncodeToString(h.Sum(nil))
	case tar.TypeDir:
		e.Type = TypeDir
	case tar.TypeSymlink:
		e.Type, e.Link = TypeSymlink, hdr.Linkname
	case tar.TypeLink:
		e.Type, e.Link = TypeHardlink, hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		e.Type = TypeChar
		if hdr.Typeflag == tar.TypeBlock {
			e.Type = TypeBlock
		}
		e.Dev = fmt.Sprintf("%d:%d", hdr.Devmajor, hdr.Devminor)
	case tar.TypeFifo:
		e.Type = TypeFifo
	default:
		return e, fmt.Errorf("unsupported tar type %q", hdr.Typeflag)
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			e.Xattrs[x] = hex.EncodeToString([]byte(v))
		}
	}
	return e, nil
}

// cleanName drops "./" and trailing "/" but keeps a root entry as "/".
func cleanName(n string) string {
	n = strings.TrimPrefix(n, "./")
	if n == "" || n == "/" || n == "." {
		return "/"
	}
	return strings.TrimSuffix(n, "/")
}

// line is the canonical text of an entry for digests.
func (e Entry) line() string {
	var keys []string
	for k := range e.Xattrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var x strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&x, "%s=%s,", k, e.Xattrs[k])
	}
	return fmt.Sprintf("%q %s %s %d:%d %d %s %q %s %s\n", e.Path, e.Type, e.Mode, e.UID, e.GID, e.Size, e.SHA256, e.Link, e.Dev, x.String())
}

func digestEntries(entries []Entry) string {
	h := sha256.New()
	for _, e := range entries {
		io.WriteString(h, e.line())
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Marshal encodes an image (or any golden part) as stable, indented JSON.
func Marshal(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
