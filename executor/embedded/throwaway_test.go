package embedded

import (
	"path/filepath"
	"testing"

	"github.com/moby/buildkit/util/db/boltutil"
	bolt "go.etcd.io/bbolt"
)

// TestThrowAwayStateSkipsFsync checks kiln's BuildKit patch: databases of a
// throw-away root skip fsync, those of a durable one keep it, whether
// opened by BuildKit or by bolt's default options.
func TestThrowAwayStateSkipsFsync(t *testing.T) {
	defer boltutil.SetThrowAwayState(false)
	for _, throwAway := range []bool{true, false} {
		boltutil.SetThrowAwayState(throwAway)
		db, err := boltutil.Open(filepath.Join(t.TempDir(), "x.db"), 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
		if err != nil {
			t.Fatal(err)
		}
		var noSync, noGrowSync bool
		db.View(func(tx *bolt.Tx) error {
			noSync, noGrowSync = tx.DB().NoSync, tx.DB().NoGrowSync
			return nil
		})
		db.Close()
		if noSync != throwAway || noGrowSync != throwAway {
			t.Errorf("throw-away %v: NoSync %v, NoGrowSync %v", throwAway, noSync, noGrowSync)
		}
		if bolt.DefaultOptions.NoSync != throwAway {
			t.Errorf("throw-away %v: bolt's default options have NoSync %v", throwAway, bolt.DefaultOptions.NoSync)
		}
	}
}
