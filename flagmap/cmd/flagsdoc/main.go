// Command flagsdoc prints docs/flags.md from flagmap's table.
package main

import (
	"fmt"

	"github.com/kilnbuild/kiln/flagmap"
)

func main() { fmt.Print(flagmap.Markdown()) }
