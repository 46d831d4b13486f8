package sbom

import (
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

func TestTheBudgetOfADecompressedImage(t *testing.T) {
	tests := []struct {
		name      string
		maxBytes  int64
		maxFiles  int64
		bytes     []int // added one after another
		files     int   // added after the bytes
		wantErrAt int   // the step (1-based, bytes then files) that passes the bound; 0: none
		want      TooLargeError
	}{
		{name: "no bounds", bytes: []int{1 << 30, 1 << 30}, files: 1_000_000},
		{name: "bytes up to the bound", maxBytes: 100, bytes: []int{60, 40}},
		{name: "one byte over", maxBytes: 100, bytes: []int{60, 40, 1, 5}, wantErrAt: 3,
			want: TooLargeError{What: "decompressed image", Size: 101, Limit: 100, AtLeast: true}},
		{name: "files up to the bound", maxFiles: 3, files: 3},
		{name: "one file over", maxFiles: 3, files: 5, wantErrAt: 4,
			want: TooLargeError{What: "image", Size: 4, Limit: 3, Unit: "files", AtLeast: true}},
		{name: "the first bound passed stays the answer", maxBytes: 10, maxFiles: 1, bytes: []int{11}, files: 2, wantErrAt: 1,
			want: TooLargeError{What: "decompressed image", Size: 11, Limit: 10, AtLeast: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBudget(Options{MaxUncompressedSize: tc.maxBytes, MaxFiles: tc.maxFiles})
			step := 0
			check := func(err error) {
				t.Helper()
				step++
				var tooLarge *TooLargeError
				switch {
				case tc.wantErrAt == 0 || step < tc.wantErrAt:
					if err != nil || b.err() != nil {
						t.Fatalf("step %d: %v, budget %v; want no error yet", step, err, b.err())
					}
				case !errors.As(err, &tooLarge) || *tooLarge != tc.want || b.err() != err:
					t.Fatalf("step %d: %v, budget %v; want %+v", step, err, b.err(), tc.want)
				}
			}
			for _, n := range tc.bytes {
				check(b.addBytes(n))
			}
			for range tc.files {
				check(b.addFile())
			}
		})
	}
}

func TestAnImageWithMoreLayersThanItsBound(t *testing.T) {
	img, err := random.Image(16, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, maxLayers := range []int{0, 3} {
		if _, err := limitImage(img, newBudget(Options{}), maxLayers); err != nil {
			t.Errorf("3 layers, bound %d: %v", maxLayers, err)
		}
	}
	var tooLarge *TooLargeError
	if _, err := limitImage(img, newBudget(Options{}), 2); !errors.As(err, &tooLarge) ||
		*tooLarge != (TooLargeError{What: "image", Size: 3, Limit: 2, Unit: "layers"}) {
		t.Errorf("3 layers, bound 2: %v", err)
	}
}
