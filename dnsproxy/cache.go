package dnsproxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCacheEntries bounds the cache so a client resolving many distinct
// names cannot grow it without limit.
const maxCacheEntries = 4096

// Bounds on how long a negative answer (NXDOMAIN, or NOERROR without
// records of the type: NODATA) is cached. RFC 2308 section 5 takes the
// time from the SOA in the authority section; the ceiling lets a name
// created on the corporate network appear within a minute, and the floor
// is what keeps a program that retries a missing name in a loop from
// sending one query through the tunnel per attempt.
const (
	minNegativeTTL = 5 * time.Second
	maxNegativeTTL = time.Minute
)

type cacheKey struct {
	name  string // lower case, no trailing dot
	qtype uint16
}

type cacheEntry struct {
	addrs   []netip.Addr // empty for a negative answer
	nx      bool         // the negative answer was NXDOMAIN, not NODATA
	expires time.Time
}

// hit is a fresh answer from the cache.
type hit struct {
	addrs []netip.Addr // a copy; empty for a negative answer
	ttl   time.Duration
	nx    bool
}

// err is what query returns for the answer: nil with addresses,
// errNXDomain or ErrNotFound without.
func (h hit) err() error {
	switch {
	case len(h.addrs) > 0:
		return nil
	case h.nx:
		return errNXDomain
	}
	return ErrNotFound
}

// cache holds positive answers for at most their TTL and negative ones
// for negativeTTL. The zero value is ready to use and safe for
// concurrent use.
type cache struct {
	mu      sync.Mutex
	entries map[cacheKey]cacheEntry // guarded by mu
}

// get returns the cached answer for key, with the time it stays valid, if
// still fresh.
func (c *cache) get(key cacheKey, now time.Time) (hit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()

	e, ok := c.entries[key]
	if !ok {
		return hit{}, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, key)
		return hit{}, false
	}
	h := hit{ttl: e.expires.Sub(now), nx: e.nx}
	if len(e.addrs) > 0 {
		h.addrs = append([]netip.Addr(nil), e.addrs...)
	}
	return h, true
}

// put stores addrs for ttl. Empty answers and zero TTLs are not stored:
// negative answers go through putNegative.
func (c *cache) put(key cacheKey, addrs []netip.Addr, ttl time.Duration, now time.Time) {
	if len(addrs) == 0 || ttl <= 0 {
		return
	}
	c.store(key, cacheEntry{
		addrs:   append([]netip.Addr(nil), addrs...),
		expires: now.Add(ttl),
	}, now)
}

// putNegative stores a negative answer, NXDOMAIN when nx, for ttl.
func (c *cache) putNegative(key cacheKey, nx bool, ttl time.Duration, now time.Time) {
	if ttl <= 0 {
		return
	}
	c.store(key, cacheEntry{nx: nx, expires: now.Add(ttl)}, now)
}

func (c *cache) store(key cacheKey, e cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.entries == nil {
		c.entries = make(map[cacheKey]cacheEntry)
	}
	if len(c.entries) >= maxCacheEntries {
		c.evictLocked(now)
	}
	c.entries[key] = e
}

// clear drops every entry.
func (c *cache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
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

// negativeTTL is how long a negative answer in msg is cached: the lesser
// of the SOA record's TTL and its MINIMUM field (RFC 2308 section 5),
// within [minNegativeTTL, maxNegativeTTL]. An answer without an SOA gets
// the floor. RFC 2308 says such answers SHOULD NOT be cached, against
// loops between caches; ocnet is the last cache before the program, the
// floor is seconds, and corporate servers (dnsmasq among them) often
// leave the SOA out.
func negativeTTL(msg *dns.Msg) time.Duration {
	for _, rr := range msg.Ns {
		soa, ok := rr.(*dns.SOA)
		if !ok {
			continue
		}
		ttl := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		return min(max(ttl, minNegativeTTL), maxNegativeTTL)
	}
	return minNegativeTTL
}
