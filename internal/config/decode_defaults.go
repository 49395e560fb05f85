package config

import (
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Defaults: deep-merged under every user of a file; the user's own values win.

// mergeFields lays own over defaults: own values win, maps (meta, limits) merge
// recursively, scalars and lists replace.
func mergeFields(def, own fields) fields {
	out := own
	out.name = orDefault(own.name, def.name)
	out.description = orDefault(own.description, def.description)
	out.image = orDefault(own.image, def.image)
	out.exact = orDefault(own.exact, def.exact)
	out.exclusive = orDefault(own.exclusive, def.exclusive)

	dm, dset := def.meta.Get()
	om, oset := own.meta.Get()
	switch {
	case dset && oset:
		out.meta = state.Some(state.Meta(mergeMaps(dm, om)))
	case !own.meta.Present() && dset:
		// Each user gets its own copy, so no consumer can change another user's meta
		// through a shared map.
		out.meta = state.Some(state.Meta(cloneValue(map[string]any(dm)).(map[string]any)))
	case !own.meta.Present():
		out.meta = def.meta
	}

	dl, dset := def.limits.Get()
	ol, oset := own.limits.Get()
	switch {
	case dset && oset:
		out.limits = state.Some(state.Limits(mergeMaps(dl, ol)))
	case !own.limits.Present() && dset:
		out.limits = state.Some(dl.Clone())
	case !own.limits.Present():
		out.limits = def.limits
	}
	return out
}

func orDefault[T any](own, def state.Opt[T]) state.Opt[T] {
	if own.Present() {
		return own
	}
	return def
}

// mergeMaps returns a new map: def deep-copied, with own laid over it.
func mergeMaps(def, own map[string]any) map[string]any {
	out := make(map[string]any, len(def)+len(own))
	for k, v := range def {
		out[k] = cloneValue(v)
	}
	for k, v := range own {
		dv, dok := out[k].(map[string]any)
		ov, ook := v.(map[string]any)
		if dok && ook {
			out[k] = mergeMaps(dv, ov)
		} else {
			out[k] = v
		}
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = cloneValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

func hasKey(obj, key string) bool {
	_, ok := objectKeyIndex[obj][key]
	return ok
}

func lastSegment(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}
