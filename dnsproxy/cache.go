package dnsproxy

import (
	"net/netip"
	"sync"
	"time"
)

// maxCacheEntries bounds the cache so a client resolving many distinct
// names cannot grow it without limit.
const maxCacheEntries = 4096

type cacheKey struct {
	name  string // lower case, no trailing dot
	qtype uint16
}

type cacheEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

// cache holds positive answers for at most their TTL. The zero value is
// ready to use and safe for concurrent use.
type cache struct {
	mu      sync.Mutex
	entries map[cacheKey]cacheEntry // guarded by mu
}

// get returns a copy of the cached addresses for key, and the time they
// stay valid, if still fresh.
func (c *cache) get(key cacheKey, now time.Time) ([]netip.Addr, time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()

	e, ok := c.entries[key]
	if !ok {
		return nil, 0, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, key)
		return nil, 0, false
	}
	return append([]netip.Addr(nil), e.addrs...), e.expires.Sub(now), true
}

// put stores addrs for ttl. Empty answers and zero TTLs are not stored.
func (c *cache) put(key cacheKey, addrs []netip.Addr, ttl time.Duration, now time.Time) {
	if len(addrs) == 0 || ttl <= 0 {
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()

	if c.entries == nil {
		c.entries = make(map[cacheKey]cacheEntry)
	}
	if len(c.entries) >= maxCacheEntries {
		c.evictLocked(now)
	}
	c.entries[key] = cacheEntry{
		addrs:   append([]netip.Addr(nil), addrs...),
		expires: now.Add(ttl),
	}
}

// evictLocked drops expired entries, and everything if none had expired.
//
// TODO: evict least recently used entries instead of flushing the whole
// cache when it is full of live answers.
func (c *cache) evictLocked(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) >= maxCacheEntries {
		clear(c.entries)
	}
}
