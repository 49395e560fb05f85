package config

import "strings"

// keySpec is one key of an object of the format: the loader accepts exactly the keys
// of these tables, and Schema describes exactly them, so the two cannot drift apart.
type keySpec struct {
	name   string
	doc    string
	schema map[string]any // the JSON Schema of the key's value
}

// The objects of the format, by the name used in messages and in the schema's $defs.
const (
	objConfig   = "config"
	objPrune    = "prune"
	objDefaults = "defaults"
	objUser     = "user"
	objLimits   = "limits"
	objDatabase = "database"
	objFile     = "file"
	objAttach   = "attachment"
	objToken    = "token"
)

var (
	configKeys = []keySpec{
		{"version", "Format version; must be 1.", anyOf(map[string]any{"const": 1}, envRef())},
		{"owner", "The ownership scope: users and tokens carry it in meta.cbkSyncOwner. 1-63 characters of a-z, 0-9 and -.",
			map[string]any{"type": "string", "pattern": "^[a-z0-9-]{1,63}$|\\$\\{",
				"patternErrorMessage": "The owner is 1-63 characters of a-z, 0-9 and - (or a ${VAR})."}},
		{"prune", "What to delete when the files no longer declare it.", anyOf(ref(objPrune), nullType())},
		{"defaults", "User fields deep-merged under every user of this file; the user's own values win.", anyOf(ref(objDefaults), nullType())},
		{"metaMode", "How meta is enforced for the users of this file unless defaults or the user say otherwise.", ref("metaMode")},
		{"externalIdKey", "The meta key that holds each user's externalId (default externalId); the files that set it must agree, and no meta of the file may declare that key.",
			map[string]any{"type": "string", "pattern": "^[A-Za-z0-9][^.]{0,127}$|\\$\\{",
				"patternErrorMessage": "A meta key that starts with a letter or digit and has no dot (or a ${VAR})."}},
		{"users", "The partner users.", anyOf(map[string]any{"type": "array", "items": ref(objUser)}, nullType())},
	}
	pruneKeys = []keySpec{
		{"users", "What to do with owned users that no file declares: true deletes them, false (the default) keeps them owned (orphans), release removes cbk-sync's owner marker from them and their owned tokens and changes nothing else.",
			anyOf(map[string]any{"type": "boolean"}, map[string]any{"const": "release"}, envRef())},
	}
	// userFieldKeys are the user keys that defaults may also set.
	userFieldKeys = []keySpec{
		{"name", "Display name; null clears it.", nullableString()},
		{"description", "Description; null clears it.", nullableString()},
		{"image", "Image URL; null clears it.", nullableString()},
		{"meta", "Meta keys to enforce; other remote keys are kept unless metaMode is exact. null clears all.", anyOf(ref("meta"), nullType())},
		{"metaMode", "merge (default): enforce the declared meta keys and keep others; exact: the declared meta is the whole meta, for the user and its tokens.", ref("metaMode")},
		{"limits", "Quotas; declared ones are laid over the remote limits.", anyOf(ref(objLimits), nullType())},
		{"exclusiveTokens", "Also revoke tokens that cbk-sync does not own (default false).", boolType()},
	}
	userKeys = append([]keySpec{
		{"id", "The platform ID of an existing sub-account: the user's identity, which an email change never breaks. It cannot be created: an id that does not exist is an error. Unique across all files.",
			map[string]any{"type": "string", "minLength": 1}},
		{"externalId", "The partner's own key for the user (a Stripe customer, a Clerk user), kept in meta under externalIdKey: the user's identity unless it has an id. Not found: created with it. Unique across all files.",
			map[string]any{"type": "string", "minLength": 1}},
		{"email", "The user's email: its identity when it declares neither id nor externalId (then required), else an ordinary field (absent: unmanaged; null: cleared). Unique case-insensitively across all files.",
			anyOf(map[string]any{"type": "string", "format": "email"}, nullType())},
		{"alias", "The user's alias (1-128 characters of a-z, 0-9, _ and -), unique across all files. The platform never returns it and clears it on every update that leaves it out, so declare it for every user that has one.",
			map[string]any{"type": "string", "pattern": "^[a-z0-9_-]{1,128}$|\\$\\{",
				"patternErrorMessage": "An alias is 1-128 characters of a-z, 0-9, _ and - (or a ${VAR})."}},
	}, append(append([]keySpec{}, userFieldKeys...),
		keySpec{"tokens", "The user's API tokens. Absent: tokens are not managed (unless defaults.tokens gives some); []: revoke all owned tokens (but those of defaults.tokens). A token named as one of defaults.tokens is merged with it field by field, the user's values winning.",
			map[string]any{"type": "array", "items": ref(objToken)}},
		keySpec{"defaultTokens", "false: this user does not get defaults.tokens (default true). With false and no tokens, the user's tokens are not managed.", boolType()})...)
	// defaultsKeys are the keys of defaults: the user fields, and the tokens every user
	// of the file gets.
	defaultsKeys = append(append([]keySpec{}, userFieldKeys...),
		keySpec{"tokens", "Tokens every user of this file gets, merged by name with the user's own tokens (the user's values win, field by field; meta merges key by key). A user opts out with defaultTokens: false. Not empty.",
			map[string]any{"type": "array", "items": ref(objToken), "minItems": 1}})
	limitsKeys = []keySpec{
		{"tokens", "Maximum tokens.", limitType()},
		{"conversations", "Maximum conversations.", limitType()},
		{"messages", "Maximum messages.", limitType()},
		{"database", "Stored-object quotas.", anyOf(ref(objDatabase), nullType())},
		{"file", "Quotas of uploaded files.", anyOf(ref(objFile), nullType())},
		{"attachment", "Quotas of conversation attachments.", anyOf(ref(objAttach), nullType())},
	}
	fileKeys = []keySpec{
		{"maxFileSize", "Largest file, in bytes.", limitType()},
	}
	attachmentKeys = []keySpec{
		{"maxFileSize", "Largest attachment, in bytes.", limitType()},
	}
	databaseKeys = []keySpec{
		{"datasets", "Maximum datasets.", limitType()},
		{"records", "Maximum dataset records.", limitType()},
		{"skillsets", "Maximum skillsets.", limitType()},
		{"abilities", "Maximum skillset abilities.", limitType()},
		{"files", "Maximum files.", limitType()},
	}
	tokenKeys = []keySpec{
		{"name", "Identity key of the token, unique per user.", map[string]any{"type": "string", "minLength": 1}},
		{"description", "Description; null clears it.", nullableString()},
		{"meta", "Meta keys to enforce (see the user's metaMode). null clears all.", anyOf(ref("meta"), nullType())},
		{"rotateAfter", "Replace the token when it is older than this: a Go duration or whole days, e.g. 30d, 720h, 1d12h.",
			durationType()},
	}
)

// objects maps each object of the format to its keys.
var objects = map[string][]keySpec{
	objConfig:   configKeys,
	objPrune:    pruneKeys,
	objDefaults: defaultsKeys,
	objUser:     userKeys,
	objLimits:   limitsKeys,
	objDatabase: databaseKeys,
	objFile:     fileKeys,
	objAttach:   attachmentKeys,
	objToken:    tokenKeys,
}

// keyNames lists the names of specs, in table order.
func keyNames(specs []keySpec) []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	return names
}

// suggest returns the allowed key closest to key (Levenshtein distance at most 2,
// ignoring case), or "" when none is close enough to be a likely typo.
func suggest(key string, allowed []string) string {
	best, bestDist := "", 3
	lk := strings.ToLower(key)
	for _, a := range allowed {
		if d := levenshtein(lk, strings.ToLower(a)); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		// Long keys are never a typo of ours; skip the quadratic work.
		return 1 << 30
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
