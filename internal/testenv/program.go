package testenv

import (
	"fmt"
	"log"
	"testing"
)

// ProgramTB lets a program that is not a test (the golden generator, the
// benchmark) call this package's testing.TB helpers: Fatalf and friends panic
// with a value Catch turns into an error, and cleanups run at Close. The
// embedded nil TB supplies testing.TB's unexported method and panics on
// anything else.
type ProgramTB struct {
	testing.TB
	Label    string               // Name(); "" means "program"
	LogTo    func(string, ...any) // Logf; nil means log.Printf
	cleanups []func()
}

type programFailure string

func (*ProgramTB) Helper() {}
func (p *ProgramTB) Name() string {
	if p.Label == "" {
		return "program"
	}
	return p.Label
}
func (p *ProgramTB) Logf(format string, a ...any) {
	if p.LogTo == nil {
		log.Printf(format, a...)
		return
	}
	p.LogTo(format, a...)
}
func (*ProgramTB) Fatalf(format string, a ...any) { panic(programFailure(fmt.Sprintf(format, a...))) }
func (*ProgramTB) Fatal(a ...any)                 { panic(programFailure(fmt.Sprint(a...))) }
func (*ProgramTB) Errorf(format string, a ...any) { panic(programFailure(fmt.Sprintf(format, a...))) }
func (*ProgramTB) Skipf(format string, a ...any)  { panic(programFailure(fmt.Sprintf(format, a...))) }
func (p *ProgramTB) Cleanup(f func())             { p.cleanups = append(p.cleanups, f) }
func (*ProgramTB) TempDir() string                { panic(programFailure("TempDir is not available outside tests")) }
func (*ProgramTB) Setenv(string, string) {
	panic(programFailure("Setenv is not available outside tests"))
}

// Close runs the registered cleanups, last first.
func (p *ProgramTB) Close() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}

// Catch runs f and turns a failure reported through a ProgramTB into an error.
func Catch[T any](f func() T) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, ok := r.(programFailure)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", string(msg))
		}
	}()
	return f(), nil
}
