package executor

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/kilnbuild/kiln/internal/testenv"
)

func TestPendingCloseCancels(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		p := startDaemonInBackground(context.Background(), daemonConfig(env))
		// Close while the daemon is still coming up.
		deadline := time.Now().Add(30 * time.Second)
		for len(testenv.ProcessesMentioning(env.StateParent)) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if d, err := p.Wait(); d != nil && err == nil {
			t.Log("start finished before the cancellation")
		} else if !errors.Is(err, errBuildEnded) && !errors.Is(err, context.Canceled) {
			t.Errorf("Wait after Close = %v, want the start cancelled", err)
		}
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

func TestPendingStopIdle(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		p := startDaemonInBackground(context.Background(), daemonConfig(env))
		d, err := p.Wait()
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		c, err := d.Client(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListWorkers(context.Background()); err != nil {
			t.Fatalf("ListWorkers on the started daemon: %v", err)
		}
		p.StopIdle()
		if err := p.Close(); err != nil {
			t.Fatalf("Close after StopIdle: %v", err)
		}
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

func TestEarlyDaemonHostsMatchPlanLayerCache(t *testing.T) {
	registry, err := compat.NewRegistrySettings(&flagmap.Options{Insecure: true}, "test")
	if err != nil {
		t.Fatal(err)
	}
	// Closed ports: the cache age checks fail fast and BuildKit is left to try.
	for _, opts := range []flagmap.Options{
		{Cache: true, Destinations: []string{"127.0.0.1:1/team/app:v1"}},
		{Cache: true, CacheRepo: "127.0.0.2:1/cache", Destinations: []string{"127.0.0.1:1/team/app:v1"}},
		{Cache: true, CacheRepo: "127.0.0.2:1/cache:tag", NoPushCache: true},
		{Cache: true, CacheRepo: "oci:" + t.TempDir()},
		{Cache: false, CacheRepo: "127.0.0.2:1/cache", Destinations: []string{"127.0.0.1:1/team/app:v1"}},
	} {
		opts.CacheTTL = time.Hour
		plan, err := PlanLayerCache(context.Background(), LayerCacheConfig{Options: &opts, Registry: registry, Logger: testenv.Logger(&testenv.SyncBuffer{})})
		if err != nil {
			t.Fatalf("PlanLayerCache(%+v): %v", opts, err)
		}
		early := earlyDaemonHosts(registry, nil, &opts)
		late := daemonHosts(registry, nil, &opts)
		if plan.Push != "" {
			late.Push = append(late.Push, plan.Push)
		}
		if !slices.Equal(early.Push, late.Push) || !slices.Equal(early.Pull, late.Pull) {
			t.Errorf("cache %q, destinations %v: early hosts %+v, PlanLayerCache implies %+v", opts.CacheRepo, opts.Destinations, early, late)
		}
	}
}
