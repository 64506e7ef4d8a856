package mesh

import (
	"fmt"
	"maps"
	"time"

	"github.com/hashicorp/memberlist"
)

// SetPublicURLs replaces the public URLs this node advertises, before or
// after Start: a node that listens on port 0 knows them only once bound.
func (c *Cluster) SetPublicURLs(urls map[string]string) error {
	c.memberMu.Lock()
	probe := c.meta
	probe.URLs = urls
	probe.Drain = true
	if n := len(probe.encode()); n > memberlist.MetaMaxSize {
		c.memberMu.Unlock()
		return fmt.Errorf("%w: node metadata would be %d bytes, memberlist allows %d", ErrInvalidConfig, n, memberlist.MetaMaxSize)
	}
	c.meta.URLs = maps.Clone(urls)
	if self, ok := c.members[c.name]; ok {
		self.PublicURLs = maps.Clone(urls)
		c.members[c.name] = self
	}
	c.memberMu.Unlock()
	if c.running.Load() {
		if err := c.ml.UpdateNode(time.Second); err != nil {
			c.log.Warn("update metadata", "urls", urls, "err", err)
		}
	}
	return nil
}
