package migrate

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kilnbuild/kiln/flagmap"
)

// SchemaVersion is the version of the JSON report; fields are only ever
// added within a version.
const SchemaVersion = 2

// Verdicts and their exit codes.
const (
	VerdictReady        = "ready"         // exit 0: kiln would run the invocation as is
	VerdictNeedsChanges = "needs-changes" // exit 3: something must change first
	VerdictInvalid      = "invalid"       // exit 1: the invocation fails validation, as it would in a build
)

// Report is the migration dry-run report (the JSON form of
// --migration-report=json). Every field is documented in doc.go.
type Report struct {
	SchemaVersion int               `json:"schemaVersion"`
	Verdict       string            `json:"verdict"`
	ExitCode      int               `json:"exitCode"`
	Source        *Source           `json:"source,omitempty"`
	Flags         []FlagReport      `json:"flags"`
	Error         string            `json:"error,omitempty"`
	Context       *ContextReport    `json:"context,omitempty"`
	Dockerfile    *DockerfileReport `json:"dockerfile,omitempty"`
	Credentials   []CredentialCheck `json:"credentials,omitempty"`
	Preflight     []Finding         `json:"preflight,omitempty"`
	Changes       []Change          `json:"changes,omitempty"`
	Notes         []Note            `json:"notes"`
}

// Source names where `migrate scan` found the invocation.
type Source struct {
	File      string `json:"file"`
	Kind      string `json:"kind"`      // "gitlab-ci", "kubernetes" or "tekton"
	Job       string `json:"job"`       // GitLab job, or Kubernetes/Tekton object name
	Container string `json:"container"` // container or step name; "" for GitLab
	Image     string `json:"image,omitempty"`
}

// FlagReport is one flag as given and what kiln makes of it.
type FlagReport struct {
	Flag        string   `json:"flag"`                 // spelling as given: "--tarPath", "-d", "env KANIKO_NO_PUSH"
	Values      []string `json:"values"`               // each occurrence, secrets replaced by ***
	Disposition string   `json:"disposition"`          // native, emulated, accepted-no-op, unsupported
	BuildKit    string   `json:"buildkit,omitempty"`   // what it becomes in BuildKit terms
	Reason      string   `json:"reason,omitempty"`     // why it has no effect or is refused
	Pending     string   `json:"pending,omitempty"`    // what kiln does not do yet for this flag
	ReplacedBy  string   `json:"replacedBy,omitempty"` // current spelling of a deprecated one
}

// ContextReport is the resolved build context.
type ContextReport struct {
	Flag   string `json:"flag"`
	Value  string `json:"value"`
	Scheme string `json:"scheme"` // "" for a directory
	Dir    string `json:"dir,omitempty"`
	// Credentials says which credentials a cloud context is read with
	// (their source, never a value).
	Credentials string `json:"credentials,omitempty"`
}

// DockerfileReport is the Dockerfile as kiln would read it.
type DockerfileReport struct {
	Path       string   `json:"path"`
	Ignore     string   `json:"dockerignore,omitempty"`
	Stages     int      `json:"stages"`
	Target     string   `json:"target,omitempty"`
	BaseImages []string `json:"baseImages"`
	// BuiltStages are the stages Kaniko builds, and kiln with it, in order.
	BuiltStages []string `json:"builtStages,omitempty"`
}

// CredentialCheck says where a registry credential would come from.
type CredentialCheck struct {
	Registry string `json:"registry"`
	For      string `json:"for"` // "push" or "cache"
	Source   string `json:"source"`
	Found    bool   `json:"found"`
}

// Change is a setting `migrate scan` says to change next to the flags.
type Change struct {
	Setting  string `json:"setting"`
	Current  string `json:"current"`
	Required string `json:"required"`
	Why      string `json:"why"`
}

// Note is a warning or problem in words a user can act on.
type Note struct {
	Severity Severity `json:"severity"`
	Topic    string   `json:"topic"`
	Message  string   `json:"message"`
}

func (r *Report) note(sev Severity, topic, format string, args ...any) {
	r.Notes = append(r.Notes, Note{Severity: sev, Topic: topic, Message: fmt.Sprintf(format, args...)})
}

// finish sets the verdict from the error, notes, findings and changes.
func (r *Report) finish() {
	switch {
	case r.Error != "":
		r.Verdict, r.ExitCode = VerdictInvalid, 1
	case r.hasErrors():
		r.Verdict, r.ExitCode = VerdictNeedsChanges, 3
	default:
		r.Verdict, r.ExitCode = VerdictReady, 0
	}
	if r.Notes == nil {
		r.Notes = []Note{}
	}
	if r.Flags == nil {
		r.Flags = []FlagReport{}
	}
}

func (r *Report) hasErrors() bool {
	for _, n := range r.Notes {
		if n.Severity == SeverityError {
			return true
		}
	}
	for _, f := range r.Preflight {
		if f.Severity == SeverityError {
			return true
		}
	}
	return len(r.Changes) > 0
}

// flagReports lists every given flag with its disposition.
func flagReports(inv *flagmap.Invocation) []FlagReport {
	var out []FlagReport
	for _, g := range inv.Given {
		row := g.Flag.Target()
		fr := FlagReport{
			Flag: g.Spelling, Values: g.Redacted(), Disposition: string(row.Disposition),
			BuildKit: row.BuildKit, Reason: row.Reason, Pending: row.Issue,
		}
		if g.Flag.AliasOf != "" {
			fr.ReplacedBy = "--" + g.Flag.AliasOf
		}
		out = append(out, fr)
	}
	return out
}

// WriteText renders the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	if s := r.Source; s != nil {
		fmt.Fprintf(&b, "%s: %s %s", s.File, s.Kind, s.Job)
		if s.Container != "" {
			fmt.Fprintf(&b, " / %s", s.Container)
		}
		if s.Image != "" {
			fmt.Fprintf(&b, " (image %s)", s.Image)
		}
		b.WriteString("\n")
	}
	b.WriteString("Flags:\n")
	if len(r.Flags) == 0 {
		b.WriteString("  (none given: Kaniko's defaults)\n")
	}
	for _, f := range r.Flags {
		occurrences := make([]string, len(f.Values))
		for i, v := range f.Values {
			occurrences[i] = f.Flag + "=" + v
		}
		fmt.Fprintf(&b, "  %s  →  %s", strings.Join(occurrences, " "), f.Disposition)
		switch {
		case f.Disposition == string(flagmap.NoOp) || f.Disposition == string(flagmap.Unsupported):
			fmt.Fprintf(&b, ": %s", f.Reason)
		case f.BuildKit != "":
			fmt.Fprintf(&b, ": %s", f.BuildKit)
		}
		if f.ReplacedBy != "" {
			fmt.Fprintf(&b, " (deprecated spelling of %s)", f.ReplacedBy)
		}
		if f.Pending != "" {
			fmt.Fprintf(&b, " [not yet: %s]", f.Pending)
		}
		b.WriteString("\n")
	}
	if c := r.Context; c != nil {
		fmt.Fprintf(&b, "Context: %s %s", c.Flag, c.Value)
		if c.Dir != "" && c.Dir != c.Value {
			fmt.Fprintf(&b, " → %s", c.Dir)
		}
		b.WriteString("\n")
		if c.Credentials != "" {
			fmt.Fprintf(&b, "Context credentials: %s\n", c.Credentials)
		}
	}
	if d := r.Dockerfile; d != nil {
		fmt.Fprintf(&b, "Dockerfile: %s (%d stages; base images: %s)\n", d.Path, d.Stages, strings.Join(d.BaseImages, ", "))
		if d.Ignore != "" {
			fmt.Fprintf(&b, "  ignore file: %s\n", d.Ignore)
		}
		if len(d.BuiltStages) > 0 {
			fmt.Fprintf(&b, "  stages built (as Kaniko builds them): %s\n", strings.Join(d.BuiltStages, ", "))
		}
	}
	if len(r.Credentials) > 0 {
		b.WriteString("Credentials:\n")
		for _, c := range r.Credentials {
			mark := "ok"
			if !c.Found {
				mark = "missing"
			}
			fmt.Fprintf(&b, "  [%s] %s (%s): %s\n", mark, c.Registry, c.For, c.Source)
		}
	}
	if len(r.Preflight) > 0 {
		b.WriteString("Environment:\n")
		for _, f := range r.Preflight {
			fmt.Fprintf(&b, "  [%s] %s: %s\n", f.Severity, f.Check, f.Seen)
			if f.Severity != SeverityOK && f.Fix != "" {
				if f.Why != "" {
					fmt.Fprintf(&b, "      why: %s\n", f.Why)
				}
				fmt.Fprintf(&b, "      fix: %s\n", f.Fix)
			}
		}
	}
	if len(r.Changes) > 0 {
		b.WriteString("Changes needed:\n")
		for _, c := range r.Changes {
			fmt.Fprintf(&b, "  %s: %s → %s (%s)\n", c.Setting, c.Current, c.Required, c.Why)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("Notes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  %s: %s: %s\n", n.Severity, n.Topic, n.Message)
		}
	}
	switch r.Verdict {
	case VerdictInvalid:
		fmt.Fprintf(&b, "Result: invalid invocation (exit 1): %s\n", r.Error)
	case VerdictNeedsChanges:
		b.WriteString("Result: needs changes before kiln can run it (exit 3)\n")
	default:
		b.WriteString("Result: kiln would run this invocation as is (exit 0)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON renders the report with the documented schema.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
