package executor

import (
	"crypto/sha256"
	"testing"
	"time"
)

func TestTheTokenCache(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	key := sha256.Sum256([]byte("scan-pod"))
	other := sha256.Sum256([]byte("another-pod"))
	scanPod := identity{podName: "vigil-scan-1-x", podUID: "pod-uid"}
	tests := []struct {
		name   string
		lookup [32]byte
		at     time.Time
		wantOK bool
	}{
		{name: "a reviewed token is known", lookup: key, at: now, wantOK: true},
		{name: "up to its time to live", lookup: key, at: now.Add(tokenCacheTTL), wantOK: true},
		{name: "and no longer", lookup: key, at: now.Add(tokenCacheTTL + time.Nanosecond)},
		{name: "another token is reviewed", lookup: other, at: now},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cache tokenCache
			cache.put(key, scanPod, now)
			got, ok := cache.get(tc.lookup, tc.at)
			if ok != tc.wantOK || (ok && got != scanPod) || (!ok && got != identity{}) {
				t.Errorf("get = %+v, %v; want %v", got, ok, tc.wantOK)
			}
		})
	}
}

func TestAFullTokenCacheStartsOver(t *testing.T) {
	now := time.Now()
	var cache tokenCache
	first := sha256.Sum256([]byte("token-0"))
	for i := range tokenCacheSize {
		cache.put(sha256.Sum256([]byte{byte(i), byte(i >> 8)}), identity{podName: "p"}, now)
	}
	cache.put(first, identity{podName: "first"}, now)
	if len(cache.entries) != 1 {
		t.Fatalf("a full cache holds %d entries after one more, want it started over with 1", len(cache.entries))
	}
	if got, ok := cache.get(first, now); !ok || got.podName != "first" {
		t.Errorf("the entry put into a full cache is %+v, %v", got, ok)
	}
	cache = tokenCache{}
	for i := range tokenCacheSize - 1 {
		cache.put(sha256.Sum256([]byte{byte(i), byte(i >> 8)}), identity{podName: "p"}, now)
	}
	cache.put(first, identity{podName: "first"}, now)
	if len(cache.entries) != tokenCacheSize {
		t.Errorf("a cache with room holds %d entries, want %d", len(cache.entries), tokenCacheSize)
	}
}
