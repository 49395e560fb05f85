package config

import (
	"gopkg.in/yaml.v3"
)

// Anchors and aliases, bounded: an alias bomb is refused before it is expanded.

// checkAliases walks the document as written, without following aliases, and adds up
// what every alias expands to. It refuses a document whose aliases expand to more than
// maxAliasNodes, or that has an alias inside its own anchor, before anything is
// decoded: so an alias bomb costs one pass over the text, not its expansion.
func (d *decoder) checkAliases(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return true
		}
		size := d.size(n.Alias)
		if size < 0 {
			d.errorf(n, "alias *%s refers to a node that contains the alias itself: YAML cannot expand that; write the value out", n.Value)
			return false
		}
		if d.aliasNodes += size; d.aliasNodes > maxAliasNodes {
			d.errorf(n, "YAML aliases in this file expand to more than %d nodes, which looks like an alias bomb: use fewer aliases (defaults can share values between users)", maxAliasNodes)
			return false
		}
		return true
	}
	for _, c := range n.Content {
		if !d.checkAliases(c) {
			return false
		}
	}
	return true
}

// resolve follows an alias to its anchored node (checkAliases has bounded them).
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

// size counts the nodes n expands to, following aliases, memoised so that nested
// aliases cost one visit each. It returns -1 for a node that contains itself.
func (d *decoder) size(n *yaml.Node) int {
	if d.sizes == nil {
		d.sizes = make(map[*yaml.Node]int)
	}
	if s, ok := d.sizes[n]; ok {
		return s
	}
	d.sizes[n] = -1
	s := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if s = d.size(n.Alias); s < 0 {
			return -1
		}
	}
	for _, c := range n.Content {
		cs := d.size(c)
		if cs < 0 {
			return -1
		}
		if s += cs; s > maxAliasNodes {
			s = maxAliasNodes + 1
			break
		}
	}
	d.sizes[n] = s
	return s
}
