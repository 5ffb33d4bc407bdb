package flagmap

// Disposition says how kiln honours a Kaniko flag.
type Disposition string

const (
	// Native flags map onto a BuildKit mechanism.
	Native Disposition = "native"
	// Emulated flags are reproduced by kiln itself around BuildKit.
	Emulated Disposition = "emulated"
	// NoOp flags are accepted and have no effect; Reason says why.
	NoOp Disposition = "accepted-no-op"
	// Unsupported flags are refused with Reason and an alternative.
	Unsupported Disposition = "unsupported"
)

// Kind is the value syntax of a flag.
type Kind string

const (
	String      Kind = "string"
	Bool        Kind = "bool"
	Int         Kind = "int"
	Duration    Kind = "duration"
	Multi       Kind = "multi"       // repeatable, each occurrence appended verbatim
	KeyValue    Kind = "key=value"   // repeatable key=value, later keys win
	MultiKeyMap Kind = "multi-map"   // repeatable, ';'-separated key=value pairs appended per key
	GitKind     Kind = "git-options" // repeatable key=value for git contexts
	Enum        Kind = "enum"        // one of Values
)

// Flag is one row of the table: everything kiln knows about one flag spelling.
type Flag struct {
	Name        string // long name without dashes
	Shorthand   string // one letter, or ""
	Kind        Kind
	Default     string   // as Kaniko's --help shows it
	Values      []string // allowed values for Enum
	Env         string   // environment variable that also sets it, or ""
	Usage       string   // help text, in our words
	Disposition Disposition
	BuildKit    string // what it becomes (native) or how kiln does it (emulated)
	Reason      string // why a no-op or unsupported, and the alternative
	Hidden      bool   // accepted but not shown by --help (Kaniko hides it too)
	AliasOf     string // deprecated spelling of this flag name
	Kiln        bool   // kiln's own flag, not Kaniko's
	Issue       string // for partly implemented flags: what is still missing
}
