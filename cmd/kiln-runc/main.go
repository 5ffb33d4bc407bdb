// Command kiln-runc is the OCI runtime kiln's buildkitd calls instead of
// runc: it makes a RUN step's config what Kaniko's RUN would see, then runs
// the real runc (see package ociruntime).
package main

import (
	"os"

	"github.com/kilnbuild/kiln/executor/ociruntime"
)

func main() {
	err := ociruntime.Exec(os.Args[1:])
	// Exec returns only on failure; BuildKit shows this line in the build error.
	os.Stderr.WriteString(ociruntime.BinaryName + ": " + err.Error() + "\n")
	os.Exit(1)
}
