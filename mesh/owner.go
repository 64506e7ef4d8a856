package mesh

// Channel ownership: rendezvous (highest random weight) hashing over the
// live members. Every node computes the owner from its own member list, so
// nodes agree once membership has converged. Draining members own nothing
// while a non-draining member exists.
//
// score(member, channel) = mix64(fnv1a(channel) ^ fnv1a(member)); the
// highest score wins, ties (practically impossible) go to the larger name.
// mix64 (the murmur3 finaliser) is a bijection with full avalanche, so the
// scores of one channel over different members are independent enough for
// an even spread; TestOwnerSpread checks it.

// ownerView is an immutable snapshot of the members eligible to own
// channels, swapped atomically on every membership change.
type ownerView struct {
	names  []string
	hashes []uint64 // fnv1a(name), parallel to names
}

func newOwnerView(members map[string]Member) *ownerView {
	v := &ownerView{}
	draining := 0
	for _, m := range members {
		if m.Draining {
			draining++
		}
	}
	for name, m := range members {
		if m.Draining && draining < len(members) {
			continue
		}
		v.names = append(v.names, name)
		v.hashes = append(v.hashes, fnv1a(name))
	}
	return v
}

// owner returns the member that owns channel, or "" in an empty view.
func (v *ownerView) owner(channel string) string {
	hc := fnv1a(channel)
	best, bestScore := "", uint64(0)
	for i, name := range v.names {
		s := mix64(hc ^ v.hashes[i])
		if best == "" || s > bestScore || (s == bestScore && name > best) {
			best, bestScore = name, s
		}
	}
	return best
}

func fnv1a(s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return h
}

func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
