package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Profile splits one kiln build's wall time into phases, from the arrival
// time of its debug log lines (logrus timestamps only have seconds) and
// BuildKit's own per-step durations.
type Profile struct {
	Scenario, Tool string
	Wall           time.Duration
	// Milestones since the executor started, in build order.
	DaemonStart, DaemonReady, SolveDone, PushDone time.Duration
	// From BuildKit's progress: layer extraction, RUN steps, OCI export.
	Unpack, Run, Export time.Duration
	RunSteps            int
}

// profileArgs make kiln log BuildKit's plain progress and its daemon.
var profileArgs = []string{"--verbosity=debug", "--log-format=text"}

func (b *bench) profile(ctx context.Context, s *Scenario) ([]Profile, error) {
	var out []Profile
	for _, t := range b.tools {
		if !strings.HasPrefix(t.Name, "kiln") {
			continue
		}
		// A warm scenario is profiled as it is measured: a rebuild after
		// a build that filled the cache.
		rev := 0
		if s.Kind != Cold {
			if _, err := b.build(ctx, s, t, 0, "profile-prime"); err != nil {
				return nil, fmt.Errorf("priming %s's cache for %s: %w", s.Name, t.Name, err)
			}
			rev = 1
		}
		lines := &stampedLines{start: time.Now()}
		sample, err := b.buildTo(ctx, s, t, rev, "profile", lines, profileArgs...)
		if err != nil {
			return nil, fmt.Errorf("profiling %s with %s: %w", s.Name, t.Name, err)
		}
		p := parseProfile(lines.lines)
		p.Scenario, p.Tool, p.Wall = s.Name, t.Name, sample.Wall
		log.Printf("profile %s %s: daemon ready %v, solve done %v, pushed %v, exit %v", s.Name, t.Name,
			p.DaemonReady, p.SolveDone, p.PushDone, p.Wall)
		out = append(out, p)
	}
	return out, nil
}

// stampedLine is one output line and when it arrived.
type stampedLine struct {
	at   time.Duration
	text string
}

// stampedLines records each output line with its arrival time; the
// executor writes log lines unbuffered, so arrival is emission.
type stampedLines struct {
	mu      sync.Mutex
	start   time.Time
	partial []byte
	lines   []stampedLine
}

func (s *stampedLines) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := time.Since(s.start)
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		s.lines = append(s.lines, stampedLine{at, string(s.partial[:i])})
		s.partial = s.partial[i+1:]
	}
}

var (
	logMessage   = regexp.MustCompile(`msg="((?:[^"\\]|\\.)*)"`)
	vertexTitle  = regexp.MustCompile(`^#(\d+) (\[.*|exporting to .*)$`)
	vertexDone   = regexp.MustCompile(`^#(\d+) DONE (\d+\.\d+)s$`)
	extractDone  = regexp.MustCompile(`^#\d+ extracting sha256:[0-9a-f]+ (\d+\.\d+)s done$`)
	runStepTitle = regexp.MustCompile(`^\[[^\]]*\] RUN `)
)

// parseProfile reads kiln's debug output (text log format).
func parseProfile(lines []stampedLine) Profile {
	var p Profile
	titles := map[string]string{}
	for _, l := range lines {
		msg := l.text
		if m := logMessage.FindStringSubmatch(l.text); m != nil {
			if u, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
				msg = u
			}
		}
		switch {
		case strings.HasPrefix(msg, "starting BuildKit:") && p.DaemonStart == 0:
			p.DaemonStart = l.at
		case strings.Contains(msg, "session started") && p.DaemonReady == 0:
			p.DaemonReady = l.at
		case strings.HasPrefix(msg, "Pushing image to ") && p.SolveDone == 0:
			p.SolveDone = l.at
		case strings.HasPrefix(msg, "Pushed "):
			p.PushDone = l.at
		}
		if m := vertexTitle.FindStringSubmatch(msg); m != nil {
			titles[m[1]] = m[2]
		}
		if m := extractDone.FindStringSubmatch(msg); m != nil {
			p.Unpack += seconds(m[1])
		}
		if m := vertexDone.FindStringSubmatch(msg); m != nil {
			title := titles[m[1]]
			switch {
			case runStepTitle.MatchString(title):
				p.Run += seconds(m[2])
				p.RunSteps++
			case strings.HasPrefix(title, "exporting to "):
				p.Export += seconds(m[2])
			}
		}
	}
	return p
}

func seconds(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Second))
}

func renderProfiles(b *strings.Builder, r *Report) {
	if len(r.Profiles) == 0 {
		return
	}
	fmt.Fprintf(b, "### Where kiln's time goes (one `--verbosity=debug` build each, seconds)\n\n")
	fmt.Fprintf(b, "Milestones are arrival times of kiln's log lines; unpack, RUN and export are BuildKit's own step durations (0.1 s resolution) inside the solve.\n\n")
	fmt.Fprintf(b, "| scenario | tool | wall | before daemon | daemon start → ready | solve | of which unpack | RUN steps | export | push | daemon stop + cleanup |\n")
	fmt.Fprintf(b, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Profiles {
		fmt.Fprintf(b, "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f (%d) | %.1f | %.2f | %.2f |\n",
			p.Scenario, p.Tool, p.Wall.Seconds(), p.DaemonStart.Seconds(),
			(p.DaemonReady - p.DaemonStart).Seconds(), (p.SolveDone - p.DaemonReady).Seconds(),
			p.Unpack.Seconds(), p.Run.Seconds(), p.RunSteps, p.Export.Seconds(),
			(p.PushDone - p.SolveDone).Seconds(), (p.Wall - p.PushDone).Seconds())
	}
	b.WriteString("\n")
}
