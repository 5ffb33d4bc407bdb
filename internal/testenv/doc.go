// Package testenv is the shared test harness: real in-process registries
// (plain HTTP, TLS, mTLS, basic auth, fault injection), base images made
// locally from Debian packages, a non-root user with subordinate IDs, and the
// binaries `make build` produces.
//
// Functions taking a *testing.T fail the test loudly (t.Fatalf naming what is
// missing and how to fix it) instead of skipping. Their non-testing cores
// (NewRegistry, NewCA, BusyboxFrom, ...) are exported for internal/cmd
// programs.
package testenv
