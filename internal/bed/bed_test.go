package bed

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "testbed", "up")); err != nil {
		t.Fatalf("module root %s has no testbed/up: %v", root, err)
	}
}

// TestStartWithoutRoot checks the skip rule; as root it has nothing to check.
func TestStartWithoutRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: Start would bring the bed up")
	}
	t.Setenv("CI", "")

	ran := t.Run("start", func(t *testing.T) {
		Start(t)
		t.Error("Start returned without root")
	})
	if !ran {
		t.Fatal("subtest failed; want it skipped")
	}
}
