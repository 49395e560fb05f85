package config

import (
	"encoding/json"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// durationPattern is the shape parseDuration accepts: optional whole days, then a Go
// duration without a sign; durationNonZero is its other rule, greater than zero (every
// part is 0 or more, so one non-zero digit makes the total positive).
const (
	durationPattern = `^([0-9]+d)?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))*$`
	durationNonZero = `[1-9]`
)

// SchemaURL is the schema's $id: the file attached to every release, so the newest is
// always at this address (.goreleaser.yaml's release.extra_files).
const SchemaURL = "https://github.com/cbk-sync/cbk-sync/releases/latest/download/cbk-sync.schema.json"

// envPattern matches a value that contains a ${VAR} reference, which the schema cannot
// type-check because it is expanded at load time.
const envPattern = `\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}`

// Schema returns the JSON Schema (draft 2020-12) of the configuration format, for
// editors (`cbk-sync schema`). It is generated from the tables the loader checks keys
// against.
func Schema() []byte {
	defs := map[string]any{
		"metaMode": map[string]any{"enum": []any{"merge", "exact"}, "description": "merge (default) or exact."},
		"meta": map[string]any{
			"type": "object",
			"description": "Free-form meta. A key must start with a letter or digit (A-Z, a-z, 0-9: the platform refuses _ and drops or hides other first characters) and must not contain a dot; " +
				"keys nested in values must not start with # (the platform hides them); cbkSyncOwner, cbkSyncNonce and cbkSyncPending are reserved.",
			"propertyNames": map[string]any{
				"pattern":             `^[A-Za-z0-9][^.]*$`,
				"patternErrorMessage": "A meta key starts with a letter or digit and has no dot (cbkSyncOwner, cbkSyncNonce and cbkSyncPending are reserved).",
				"not":                 map[string]any{"enum": []any{state.OwnerKey, state.NonceKey, state.PendingKey}},
			},
			"additionalProperties": ref("metaValue"),
		},
		"metaValue": map[string]any{
			"description": "A meta value: any JSON value; the keys of its objects must not start with #.",
			"anyOf": []any{
				map[string]any{"type": "object", "propertyNames": map[string]any{"pattern": "^([^#]|$)",
					"patternErrorMessage": "A key inside a meta value must not start with # (the platform hides such keys)."}, "additionalProperties": ref("metaValue")},
				map[string]any{"type": "array", "items": ref("metaValue")},
				map[string]any{"type": []string{"string", "number", "boolean", "null"}},
			},
		},
		"envRef": map[string]any{"type": "string", "pattern": envPattern,
			"patternErrorMessage": "Not a ${VAR} or ${VAR:-default} reference.",
			"description":         "A ${VAR} or ${VAR:-default} reference, expanded from the environment at load time."},
	}
	for name, keys := range objects {
		if name == objConfig {
			continue
		}
		defs[name] = objectSchema(keys)
	}
	root := objectSchema(configKeys)
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = SchemaURL
	root["title"] = "cbk-sync configuration (version 1)"
	root["required"] = []string{"version", "owner"}
	root["$defs"] = defs
	ref := defs[objUser].(map[string]any)
	// A user names its sub-account by id, externalId or email; only under one of the
	// first two may the email be null (cleared).
	ref["anyOf"] = []any{
		map[string]any{"required": []string{"id"}},
		map[string]any{"required": []string{"externalId"}},
		map[string]any{"required": []string{"email"}, "properties": map[string]any{"email": map[string]any{"type": "string"}}},
	}
	defs[objToken].(map[string]any)["required"] = []string{"name"}

	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		panic("config: schema does not marshal: " + err.Error()) // a bug in the tables above
	}
	return append(b, '\n')
}

func objectSchema(keys []keySpec) map[string]any {
	props := make(map[string]any, len(keys))
	for _, k := range keys {
		p := make(map[string]any, len(k.schema)+1)
		for n, v := range k.schema {
			p[n] = v
		}
		p["description"] = k.doc
		props[k.name] = p
	}
	return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
}

func ref(def string) map[string]any { return map[string]any{"$ref": "#/$defs/" + def} }

func anyOf(alts ...map[string]any) map[string]any { return map[string]any{"anyOf": alts} }

func nullType() map[string]any { return map[string]any{"type": "null"} }

func envRef() map[string]any { return ref("envRef") }

func boolType() map[string]any { return anyOf(map[string]any{"type": "boolean"}, envRef()) }

func nullableString() map[string]any { return map[string]any{"type": []string{"string", "null"}} }

func limitType() map[string]any {
	return anyOf(map[string]any{"type": "integer", "minimum": 0, "maximum": state.MaxLimit}, nullType(), envRef())
}

// durationType is rotateAfter's value: what parseDuration accepts, a ${VAR}, or null.
func durationType() map[string]any {
	return anyOf(map[string]any{"type": "string", "allOf": []any{
		map[string]any{"pattern": durationPattern,
			"patternErrorMessage": "Not a duration: write a number with a unit, such as 30d, 720h, 1d12h or 90m (units: d, h, m, s, ms, us, ns)."},
		map[string]any{"pattern": durationNonZero,
			"patternErrorMessage": "A duration must be greater than zero; remove rotateAfter to never rotate."},
	}}, envRef(), nullType())
}
