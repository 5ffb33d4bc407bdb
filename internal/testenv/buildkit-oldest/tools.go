//go:build tools

// Package buildkitoldest pins buildkitd so `go build` can build it from this
// module: go build github.com/moby/buildkit/cmd/buildkitd
package buildkitoldest

import _ "github.com/moby/buildkit/cmd/buildkitd"
