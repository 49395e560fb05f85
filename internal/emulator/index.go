package emulator

import (
	"cmp"
	"math"
	"strings"

	"github.com/google/btree"
)

// The ordered indexes are B-trees (github.com/google/btree): an insert, a delete and
// the start of a page cost O(log N), where the sorted slice they replace paid an O(N)
// memmove per insert and delete. Clone is O(1) and copy-on-write, which is how a
// snapshot of the whole state is taken under the lock and encoded outside it
// (persist.go). Records are never changed in place once indexed (an update stores a
// new record), so a clone's records stay as they were.

// indexKey orders an index: the group (a token's user; "" for users), then creation
// time, then id, the order of every list. top marks the end of a group, for the
// start of a descending walk.
type indexKey struct {
	group     string
	createdAt int64
	id        string
	top       bool
}

func (a indexKey) less(b indexKey) bool {
	if c := strings.Compare(a.group, b.group); c != 0 {
		return c < 0
	}
	if a.top != b.top {
		return b.top
	}
	if c := cmp.Compare(a.createdAt, b.createdAt); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

type indexItem[T any] struct {
	key indexKey
	v   T
}

// ordered is an index of records in indexKey order.
type ordered[T any] struct {
	t *btree.BTreeG[indexItem[T]]
}

// btreeDegree is the B-tree's degree: nodes of up to 63 items, a few cache lines of
// keys each, and a depth of 4 at a million records.
const btreeDegree = 32

func newOrdered[T any]() *ordered[T] {
	return &ordered[T]{t: btree.NewG(btreeDegree, func(a, b indexItem[T]) bool { return a.key.less(b.key) })}
}

// put inserts v under k, or replaces the record stored under k.
func (o *ordered[T]) put(k indexKey, v T) { o.t.ReplaceOrInsert(indexItem[T]{key: k, v: v}) }

func (o *ordered[T]) remove(k indexKey) { o.t.Delete(indexItem[T]{key: k}) }

func (o *ordered[T]) len() int { return o.t.Len() }

// clone returns an O(1) copy-on-write copy, safe to read while o changes.
func (o *ordered[T]) clone() *ordered[T] { return &ordered[T]{t: o.t.Clone()} }

// each calls f on the records of group in ascending order until f returns false.
func (o *ordered[T]) each(group string, f func(T) bool) {
	o.t.AscendGreaterOrEqual(indexItem[T]{key: indexKey{group: group, createdAt: math.MinInt64}}, func(it indexItem[T]) bool {
		return it.key.group == group && f(it.v)
	})
}

// all returns the records of group in ascending order.
func (o *ordered[T]) all(group string) []T {
	var out []T
	o.each(group, func(v T) bool { out = append(out, v); return true })
	return out
}

// page returns up to take records of group (all when take <= 0) that keep accepts, in
// ascending or descending order, starting strictly after the key after (from the
// start when nil). Its cost is O(log N) plus the records it walks.
func (o *ordered[T]) page(group string, asc bool, after *indexKey, take int, keep func(T) bool) []T {
	var out []T
	walk := func(it indexItem[T]) bool {
		if it.key.group != group {
			return false
		}
		if after != nil && it.key == *after {
			return true // strictly after the cursor
		}
		if keep == nil || keep(it.v) {
			out = append(out, it.v)
		}
		return take <= 0 || len(out) < take
	}
	start := indexKey{group: group, createdAt: math.MinInt64}
	if !asc {
		start = indexKey{group: group, top: true}
	}
	if after != nil {
		start = *after
	}
	if asc {
		o.t.AscendGreaterOrEqual(indexItem[T]{key: start}, walk)
	} else {
		o.t.DescendLessOrEqual(indexItem[T]{key: start}, walk)
	}
	return out
}
