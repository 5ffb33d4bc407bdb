package mountinfo

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	info := "22 1 0:21 / / rw,relatime - overlay overlay rw\n" +
		"not a mountinfo line\n" +
		"24 22 8:1 /x /with\\040space\\134x ro,nosuid - ext4 /dev/sda1 rw\n"
	got, err := Parse(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{{Point: "/", FSType: "overlay"}, {Point: `/with space\x`, FSType: "ext4", ReadOnly: true}}
	if len(got) != len(want) {
		t.Fatalf("Parse = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
