package flagmap

// Subcommand is one of the maintained fork's executor subcommands, with its
// disposition like a flag's.
type Subcommand struct {
	Use         string // as in `executor <Use>`
	Usage       string
	Disposition Disposition
	What        string // how kiln does it (native, emulated)
	Reason      string // why refused (unsupported)
}

// Subcommands are the fork's `executor login` and `executor push`.
var Subcommands = []Subcommand{
	{Use: "login REGISTRY -u USER (-p PASSWORD | --password-stdin)",
		Usage:       "store a registry credential for later builds",
		Disposition: Emulated,
		What:        "kiln writes the auths entry into $DOCKER_CONFIG/config.json (default /kaniko/.docker), or into the credential store that file names, as the fork does; the password is never printed"},
	{Use: "push PATH -d DESTINATION...",
		Usage:       "push a docker-save tarball or an OCI layout made earlier",
		Disposition: Unsupported,
		Reason:      "not supported by kiln yet; build and push in one executor call, or push the tarball with crane push PATH DESTINATION"},
}
