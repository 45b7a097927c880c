package bed

import "testing"

// TestNames checks that instance names and addresses follow testbed/lib.sh,
// and that the default instance keeps the shared bed's.
func TestNames(t *testing.T) {
	for _, tc := range []struct {
		id                               string
		head, client, dev, headIP, webIP string
		bad                              bool
	}{
		{id: "", head: "ocn-head", client: "ocn-cli", dev: "ocn-c0",
			headIP: "198.18.20.1", webIP: "198.18.120.10"},
		{id: "2", head: "ocn2-head", client: "ocn2-cli", dev: "ocn2-c0",
			headIP: "198.18.22.1", webIP: "198.18.122.10"},
		{id: "0", bad: true},
		{id: "02", bad: true},
		{id: "100", bad: true},
		{id: "x", bad: true},
	} {
		t.Run("id="+tc.id, func(t *testing.T) {
			head, cli, dev, headIP, webIP, err := names(tc.id)
			if tc.bad {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{head, cli, dev, headIP, webIP}
			want := []string{tc.head, tc.client, tc.dev, tc.headIP, tc.webIP}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("got %q, want %q", got, want)
					break
				}
			}
		})
	}
}
