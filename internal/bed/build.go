package bed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const buildTimeout = 5 * time.Minute

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// BuildOcnet builds ./cmd/ocnet once per test binary and returns the path of
// the binary. The binary and its directory are readable and executable by
// everyone, so that AsNobodyInClient can run it. Main removes the directory.
//
// With OCNET_BIN set, the tests run that binary instead of building one; it
// must be executable by nobody.
func BuildOcnet(t testing.TB) string {
	t.Helper()

	if bin := os.Getenv("OCNET_BIN"); bin != "" {
		return bin
	}
	buildOnce.Do(func() { buildBin, buildErr = build() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// BuildOcnet is the package-level BuildOcnet, for callers holding a *Bed.
func (b *Bed) BuildOcnet(t testing.TB) string {
	t.Helper()
	return BuildOcnet(t)
}

func build() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}

	dir, err := os.MkdirTemp("", "ocnet-e2e-")
	if err != nil {
		return "", fmt.Errorf("bed: %w", err)
	}
	buildDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("bed: %w", err)
	}

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()

	bin := filepath.Join(dir, "ocnet")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/ocnet")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bed: go build ./cmd/ocnet: %w\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return "", fmt.Errorf("bed: %w", err)
	}
	return bin, nil
}

// Main runs the tests and then removes what BuildOcnet left behind. Use it
// from TestMain: os.Exit(bed.Main(m)). The bed itself stays up for the next
// run; testbed/down stops it.
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}
