// Command kiln-helper is the program the executor runs its helper processes
// as (the remover, the reaper; see executor/helper), small so they start
// at once.
package main

import "github.com/kilnbuild/kiln/executor/helper"

func main() { helper.Main() }
