//go:build tools

// Package wrapper pins Kaniko's executor so `go build` can build it from this
// module: go build github.com/GoogleContainerTools/kaniko/cmd/executor
package wrapper

import _ "github.com/GoogleContainerTools/kaniko/cmd/executor"
