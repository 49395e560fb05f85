package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBadConfigs breaks each rule once and pins the whole message, position included,
// because the message is the product: it must say where, what is wrong and what to do.
func TestBadConfigs(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"missing version", "owner: acme\n",
			`c.yaml:1:1: missing "version": add "version: 1" at the top of the file`},
		{"missing owner", "version: 1\n",
			`c.yaml:1:1: missing "owner": add "owner: <scope>", the name (a-z, 0-9, -) that marks the users these files manage`},
		{"wrong version", "version: 2\nowner: acme\n",
			`c.yaml:1:10: unsupported version 2: this cbk-sync reads version 1; set "version: 1"`},
		{"version not a number", "version: one\nowner: acme\n",
			`c.yaml:1:10: version must be a whole number, not the string "one"`},
		{"bad owner", "version: 1\nowner: Acme_Platform\n",
			`c.yaml:2:8: invalid owner "Acme_Platform": use 1 to 63 characters of a-z, 0-9 and -`},
		{"owner not string", "version: 1\nowner: [a]\n",
			`c.yaml:2:8: owner must be a string, not a list`},
		{"unknown top key with suggestion", "version: 1\nowner: acme\nuser: []\n",
			`c.yaml:3:1: unknown key "user" at the top level; did you mean "users"?`},
		{"unknown key no suggestion", "version: 1\nowner: acme\nfrobnicate: 1\n",
			`c.yaml:3:1: unknown key "frobnicate" at the top level; the keys allowed here are: version, owner, prune, defaults, metaMode, externalIdKey, users`},
		{"key at wrong level", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    rotateAfter: 30d\n",
			`c.yaml:5:5: unknown key "rotateAfter" in a user; "rotateAfter" is a key of a token (under tokens): move it there`},
		{"duplicate key", "version: 1\nowner: acme\nowner: acme\n",
			`c.yaml:3:1: duplicate key "owner": it is already set at line 2, column 1; remove one of the two`},
		{"duplicate key in user", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: A\n    name: B\n",
			`c.yaml:6:5: duplicate key "name": it is already set at line 5, column 5; remove one of the two`},
		{"missing email", "version: 1\nowner: acme\nusers:\n  - name: A\n",
			`c.yaml:4:5: this user has no identity: add "email: <address>", "externalId: <your own key for the user>" or "id: <the platform's user id>"`},
		{"bad email", "version: 1\nowner: acme\nusers:\n  - email: not-an-email\n",
			`c.yaml:4:12: invalid email "not-an-email": it has no "@"; the platform accepts only a plain address such as name@example.com`},
		// The four addresses Go's net/mail accepts and the platform refuses with 400.
		{"email on a single-label domain", "version: 1\nowner: acme\nusers:\n  - email: a@localhost\n",
			`c.yaml:4:12: invalid email "a@localhost": the domain has one label; the platform requires at least two, such as example.com; the platform accepts only a plain address such as name@example.com`},
		{"email with _ in the domain", "version: 1\nowner: acme\nusers:\n  - email: b@x_y.test\n",
			`c.yaml:4:12: invalid email "b@x_y.test": the domain has the character "_"; domain labels take only letters, digits and "-"; the platform accepts only a plain address such as name@example.com`},
		{"email at an IP literal", "version: 1\nowner: acme\nusers:\n  - email: c@[1.2.3.4]\n",
			`c.yaml:4:12: invalid email "c@[1.2.3.4]": the domain is an IP literal, not a name; the platform accepts only a plain address such as name@example.com`},
		{"email with a label starting with -", "version: 1\nowner: acme\nusers:\n  - email: d@-x.test\n",
			`c.yaml:4:12: invalid email "d@-x.test": the domain label "-x" starts or ends with "-"; the platform accepts only a plain address such as name@example.com`},
		{"the lock's email domain", "version: 1\nowner: acme\nusers:\n  - email: cbk-sync-lock+acme@Lock.cbk-sync.invalid\n",
			`c.yaml:4:12: email "cbk-sync-lock+acme@Lock.cbk-sync.invalid": the domain lock.cbk-sync.invalid is reserved for the lock cbk-sync takes on an account; use another address`},
		{"email with a zero-width space", "version: 1\nowner: acme\nusers:\n  - email: \"ka\\u200Bte@acme.test\"\n",
			`c.yaml:4:12: invalid email "ka\u200bte@acme.test": it has the invisible format character U+200B at character 3 (a zero-width or text-direction control); remove it: it makes the address look like another one`},
		{"email with a right-to-left override", "version: 1\nowner: acme\nusers:\n  - email: \"kate@\u202Etset.emca\"\n",
			`c.yaml:4:12: invalid email "kate@\u202etset.emca": it has the invisible format character U+202E at character 6 (a zero-width or text-direction control); remove it: it makes the address look like another one`},
		{"email with the Kelvin sign", "version: 1\nowner: acme\nusers:\n  - email: \u212Aate@acme.test\n",
			`c.yaml:4:12: invalid email "\u212aate@acme.test": it has the compatibility character U+212A at character 1, which stands for "K"; write "K" instead`},
		{"email with a control character", "version: 1\nowner: acme\nusers:\n  - email: \"kate\\e@acme.test\"\n",
			`c.yaml:4:12: invalid email "kate\x1b@acme.test": it has the control character U+001B at character 5; remove it`},
		{"email with a no-break space", "version: 1\nowner: acme\nusers:\n  - email: \"kate\\u00A0@acme.test\"\n",
			`c.yaml:4:12: invalid email "kate\u00a0@acme.test": it has the space character U+00A0 at character 5; remove it`},
		{"email with display name", "version: 1\nowner: acme\nusers:\n  - email: Alice <a@acme.test>\n",
			`c.yaml:4:12: invalid email "Alice <a@acme.test>": the part before the "@" has the character " ", which the platform does not accept there; the platform accepts only a plain address such as name@example.com`},
		{"duplicate email any case", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n  - email: A@ACME.test\n",
			`c.yaml:5:12: duplicate email "A@ACME.test": c.yaml:4:12 already declares it (emails compare case-insensitively); remove or merge one of the two users`},
		{"duplicate token name", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens:\n      - name: ci\n      - name: ci\n",
			`c.yaml:7:15: duplicate token name "ci": this user already declares it at line 6, column 15; rename or remove one`},
		{"missing token name", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens:\n      - description: x\n",
			`c.yaml:6:9: this token has no "name": add "name: <name>", unique within the user`},
		{"negative limit", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { database: { files: -1 } }\n",
			`c.yaml:5:34: limits.database.files is -1: a limit must be 0 or more`},
		{"limit not integer", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { tokens: 1.5 }\n",
			`c.yaml:5:23: limits.tokens must be a whole number, not the number 1.5`},
		{"fractional file limit", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { file: { maxFileSize: 1.5 } }\n",
			`c.yaml:5:36: limits.file.maxFileSize must be a whole number, not the number 1.5`},
		{"limit 1.0 is not a whole number as written", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { attachment: { maxFileSize: 1.0 } }\n",
			`c.yaml:5:42: limits.attachment.maxFileSize must be a whole number, not the number 1.0`},
		{"limit above 2^53", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { messages: 9007199254740992 }\n",
			`c.yaml:5:25: limits.messages is 9007199254740992: a limit must be at most 9007199254740991, the largest whole number the platform stores exactly`},
		{"unknown key in limits.file", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { file: { maxSize: 1 } }\n",
			`c.yaml:5:23: unknown key "maxSize" in limits.file; the keys allowed here are: maxFileSize`},
		{"maxFileSize at the wrong level", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { maxFileSize: 1 }\n",
			`c.yaml:5:15: unknown key "maxFileSize" in limits; "maxFileSize" is a key of limits.file: move it there`},
		{"file limits not a mapping", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { file: 5 }\n",
			`c.yaml:5:21: limits.file must be a mapping of keys to values, not the integer 5`},
		{"bad duration", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens: [{name: ci, rotateAfter: 30x}]\n",
			`c.yaml:5:38: rotateAfter: "30x" is not a duration: write a number with a unit, such as 30d, 720h or 90m (units: d, h, m, s, ms)`},
		{"zero duration", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens: [{name: ci, rotateAfter: 0d}]\n",
			`c.yaml:5:38: rotateAfter: "0d" must be greater than zero: give how old a token may get, such as 30d, or remove rotateAfter to never rotate`},
		{"name wrong type", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: 123\n",
			`c.yaml:5:11: name must be a string, not the integer 123; quote it if you mean the text: name: "123"`},
		{"meta not a mapping", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: [a]\n",
			`c.yaml:5:11: meta must be a mapping of keys to values, not a list`},
		{"meta underscore key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { _x: 1 }\n",
			`c.yaml:5:13: meta key "_x" starts with "_", which the API rejects; rename it`},
		{"meta dash key dropped on update", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { -team: x }\n",
			`c.yaml:5:13: meta key "-team" starts with "-", which the platform silently drops on update (a meta key must start with a letter or digit, A-Z, a-z, 0-9): rename it`},
		{"meta dollar key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { $update: { cbkSyncOwner: other } }\n",
			`c.yaml:5:13: meta key "$update" starts with "$", which the platform silently drops on update (a meta key must start with a letter or digit, A-Z, a-z, 0-9): rename it`},
		{"meta hash key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { \"#note\": x }\n",
			`c.yaml:5:13: meta key "#note" starts with "#", which the platform hides on read and drops on update (a meta key must start with a letter or digit, A-Z, a-z, 0-9): rename it`},
		{"meta non-ASCII letter key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { équipe: x }\n",
			`c.yaml:5:13: meta key "équipe" starts with "é", which the platform silently drops on update (a meta key must start with a letter or digit, A-Z, a-z, 0-9): rename it`},
		{"meta space key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { \" team\": x }\n",
			`c.yaml:5:13: meta key " team" starts with " ", which the platform silently drops on update (a meta key must start with a letter or digit, A-Z, a-z, 0-9): rename it`},
		{"meta nested hash key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { a: { b: { \"#c\": 1 } } }\n",
			`c.yaml:5:23: key "#c" in meta.a.b starts with "#", which the platform hides on read at any depth, so it would be planned again on every run: rename it`},
		{"token meta dash key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens: [{ name: ci, meta: { -x: 1 } }]\n",
			`c.yaml:5:34: meta key "-x" starts with "-", which the platform silently drops on update (a meta key must start with a letter or digit, A-Z, a-z, 0-9): rename it`},
		{"meta dash key in defaults", "version: 1\nowner: acme\ndefaults:\n  meta: { -x: 1 }\n",
			`c.yaml:4:11: meta key "-x" starts with "-", which the platform silently drops on update (a meta key must start with a letter or digit, A-Z, a-z, 0-9): rename it`},
		{"meta dotted key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { a.b: 1 }\n",
			`c.yaml:5:13: meta key "a.b" contains ".", which the API's meta filter reads as nesting; rename it (for example with - instead)`},
		{"meta reserved key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { cbkSyncOwner: other }\n",
			`c.yaml:5:13: meta key "cbkSyncOwner" is reserved: cbk-sync sets it itself; remove it`},
		{"meta infinity", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta: { x: .inf }\n",
			`c.yaml:5:16: meta.x is .inf, which JSON cannot hold: use a finite number or a string`},
		{"bad metaMode", "version: 1\nowner: acme\nmetaMode: replace\n",
			`c.yaml:3:11: metaMode must be "merge" (enforce the declared meta keys, keep others) or "exact" (the declared meta is the whole meta), not the string "replace"`},
		{"exclusiveTokens not bool", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    exclusiveTokens: yes\n",
			`c.yaml:5:22: exclusiveTokens must be true or false, not the string "yes"`},
		{"prune not bool", "version: 1\nowner: acme\nprune: { users: 1 }\n",
			`c.yaml:3:17: prune.users must be true (delete owned users no file declares), false (keep them) or "release" (stop managing them: remove cbk-sync's marker, delete nothing), not the integer 1`},
		{"prune not a mode", "version: 1\nowner: acme\nprune: { users: releases }\n",
			`c.yaml:3:17: prune.users must be true (delete owned users no file declares), false (keep them) or "release" (stop managing them: remove cbk-sync's marker, delete nothing), not the string "releases"`},
		{"users not a list", "version: 1\nowner: acme\nusers: { email: a@acme.test }\n",
			`c.yaml:3:8: users must be a list of users (lines starting with "- email: ..."), not a mapping`},
		{"tokens null", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens:\n",
			`c.yaml:5:12: tokens is null, which is ambiguous: write "tokens: []" to revoke all owned tokens, or remove the key to leave tokens unmanaged`},
		{"alias in defaults", "version: 1\nowner: acme\ndefaults:\n  alias: acme\n",
			`c.yaml:4:3: "alias" cannot be in defaults: an alias is unique per partner account; give each user its own`},
		{"bad alias", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    alias: Acme.EU\n",
			`c.yaml:5:12: invalid alias "Acme.EU": use 1 to 128 characters of a-z, 0-9, _ and -`},
		{"empty alias", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    alias: \"\"\n",
			`c.yaml:5:12: invalid alias "": use 1 to 128 characters of a-z, 0-9, _ and -`},
		{"alias too long", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    alias: " + strings.Repeat("a", 129) + "\n",
			`c.yaml:5:12: invalid alias "` + strings.Repeat("a", 129) + `": use 1 to 128 characters of a-z, 0-9, _ and -`},
		{"null alias", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    alias: null\n",
			`c.yaml:5:12: alias must be a string, not null: remove the key if the user has no alias (an update clears an alias the file does not declare)`},
		{"alias not a string", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    alias: 42\n",
			`c.yaml:5:12: alias must be a string, not the integer 42; quote it if you mean the text: alias: "42"`},
		{"duplicate alias", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    alias: acme-eu\n  - email: b@acme.test\n    alias: acme-eu\n",
			`c.yaml:7:12: duplicate alias "acme-eu": c.yaml:5:12 already declares it (an alias is unique per partner account); give one of the two users another alias`},
		{"email in defaults", "version: 1\nowner: acme\ndefaults:\n  email: a@acme.test\n",
			`c.yaml:4:3: "email" cannot be in defaults: it names one user; move it into the users`},
		{"empty default tokens", "version: 1\nowner: acme\ndefaults:\n  tokens: []\n",
			`c.yaml:4:11: defaults.tokens is empty: list the tokens every user of this file gets, or remove the key`},
		{"null default tokens", "version: 1\nowner: acme\ndefaults:\n  tokens:\n",
			`c.yaml:4:10: tokens is null, which is ambiguous: write "tokens: []" to revoke all owned tokens, or remove the key to leave tokens unmanaged`},
		{"duplicate default token", "version: 1\nowner: acme\ndefaults:\n  tokens:\n    - name: ci\n    - name: ci\n",
			`c.yaml:6:13: duplicate token name "ci": this user already declares it at line 5, column 13; rename or remove one`},
		{"bad default rotateAfter", "version: 1\nowner: acme\ndefaults:\n  tokens: [{name: ci, rotateAfter: soon}]\n",
			`c.yaml:4:36: rotateAfter: "soon" is not a duration: write a number with a unit, such as 30d, 720h or 90m (units: d, h, m, s, ms)`},
		{"defaultTokens in defaults", "version: 1\nowner: acme\ndefaults:\n  defaultTokens: false\n",
			`c.yaml:4:3: "defaultTokens" cannot be in defaults: it is how one user opts out of defaults.tokens; set it on that user`},
		{"defaultTokens not bool", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    defaultTokens: no\n",
			`c.yaml:5:20: defaultTokens must be true or false, not the string "no"`},
		{"unset env var", "version: 1\nowner: ${OWNER}\n",
			`c.yaml:2:8: owner: environment variable OWNER is not set: set it, or give a default with ${OWNER:-value}`},
		{"bad env syntax", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: ${A B}\n",
			`c.yaml:5:11: name: invalid variable name "A B" in "${A B}": use letters, digits and _, not starting with a digit (write "$${" for a literal "${")`},
		{"unterminated env", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    name: x ${A\n",
			`c.yaml:5:11: name: unterminated "${" in "x ${A": close it with "}", or write "$${" for a literal "${"`},
		{"env not a number", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits:\n      tokens: ${NAME}\n",
			`c.yaml:6:15: limits.tokens must be a whole number, not "bob" (from ${NAME})`},
		{"malformed yaml", "version: 1\nowner: acme\nusers: [\n",
			`c.yaml:3:1: invalid YAML: did not find expected node content; check the indentation, colons and quotes on this line and the one before`},
		{"bad mapping syntax", "version: 1\nowner: acme: x\n",
			`c.yaml:2:1: invalid YAML: mapping values are not allowed in this context; check the indentation, colons and quotes on this line and the one before`},
		{"tab indentation", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n\t  name: A\n",
			`c.yaml:5:1: a tab character in the indentation: YAML indents with spaces only; replace the tab with spaces`},
		{"control character", "version: 1\nowner: \"ac\x01me\"\n",
			`c.yaml:2:11: control character U+0001, which YAML does not allow: remove it, or write it as an escape such as "\x01" in a double-quoted string`},
		{"multiple documents", "version: 1\nowner: acme\n---\nversion: 1\nowner: acme\n",
			`c.yaml:3:1: a second YAML document starts here: put one document in each file (several files can be given, or a directory)`},
		{"empty file", "",
			`c.yaml: the file is empty: a config needs at least "version: 1" and "owner"`},
		{"comments only", "# nothing here\n",
			`c.yaml: the file is empty: a config needs at least "version: 1" and "owner"`},
		{"not a mapping", "- a\n- b\n",
			`c.yaml:1:1: the file must be a mapping of keys to values, not a list`},
		{"merge key", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    <<: {name: A}\n",
			`c.yaml:5:5: YAML merge keys ("<<") are not supported: use defaults for values that users share, or write the keys out`},
		{"alias cycle", "version: 1\nowner: acme\nusers: &u\n  - email: a@acme.test\n    meta: { x: *u }\n",
			`c.yaml:5:16: alias *u refers to a node that contains the alias itself: YAML cannot expand that; write the value out`},
		{"env in flow mapping unquoted", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: {tokens: ${N}}\n",
			`c.yaml:5:22: invalid YAML: did not find expected ',' or '}'; inside { } or [ ], quote a variable reference: "${VAR}"`},
		{"integer overflow", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    limits: { tokens: 99999999999999999999 }\n",
			`c.yaml:5:23: limits.tokens must be a whole number, not the number 99999999999999999999`},
		{"empty token name", "version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    tokens: [{name: \"\"}]\n",
			`c.yaml:5:21: name must not be empty: give a value`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadBytes("c.yaml", []byte(c.doc), env("NAME", "bob"))
			require.Error(t, err)
			var errs Errors
			require.True(t, errors.As(err, &errs), "%T", err)
			assert.Equal(t, c.want, err.Error())
		})
	}
}

// aliasBomb is the "billion laughs": nine levels of ten aliases, 10^9 nodes expanded.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("version: 1\nowner: acme\nusers:\n  - email: a@acme.test\n    meta:\n")
	b.WriteString("      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "      l%d: &l%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

func manyUsers(n int) string {
	var b strings.Builder
	b.Grow(n * 30)
	b.WriteString("version: 1\nowner: acme\nusers:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - email: u%d@acme.test\n", i)
	}
	return b.String()
}

// TestBoundedInput checks that oversized and hostile input is refused with a clear
// message (and, by the test finishing at all, without expanding it).
func TestBoundedInput(t *testing.T) {
	t.Run("alias bomb", func(t *testing.T) {
		_, err := LoadBytes("c.yaml", []byte(aliasBomb()), nil)
		assert.EqualError(t, err, `c.yaml:10:51: YAML aliases in this file expand to more than 100000 nodes, which looks like an alias bomb: use fewer aliases (defaults can share values between users)`)
	})
	t.Run("more than 100000 users", func(t *testing.T) {
		_, err := LoadBytes("c.yaml", []byte(manyUsers(MaxUsers+1)), nil)
		assert.EqualError(t, err, `c.yaml:100004:5: too many users: the files declare more than 100000 in total, the most cbk-sync manages in one run; split them across owners and run once per owner`)
	})
	t.Run("more than 100000 users across files", func(t *testing.T) {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
		require.NoError(t, os.WriteFile(a, []byte(manyUsers(MaxUsers)), 0o644))
		require.NoError(t, os.WriteFile(b, []byte("version: 1\nowner: acme\nusers:\n  - email: last@acme.test\n"), 0o644))
		_, err := Load([]string{a, b}, nil)
		assert.EqualError(t, err, b+`:4:5: too many users: the files declare more than 100000 in total, the most cbk-sync manages in one run; split them across owners and run once per owner`)
	})
	t.Run("file over 10 MiB", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "big.yaml")
		f, err := os.Create(p)
		require.NoError(t, err)
		line := "# " + strings.Repeat("x", 1021) + "\n"
		for written := 0; written <= MaxFileSize; written += len(line) {
			_, err = f.WriteString(line)
			require.NoError(t, err)
		}
		require.NoError(t, f.Close())
		_, err = Load([]string{p}, nil)
		assert.EqualError(t, err, p+`: the file is larger than 10 MiB (10486784 bytes), the most cbk-sync reads: split the users across several files`)

		_, err = LoadBytes("mem.yaml", make([]byte, MaxFileSize+1), nil)
		assert.EqualError(t, err, `mem.yaml: the file is larger than 10 MiB (10485761 bytes), the most cbk-sync reads: split the users across several files`)
	})
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "b.yaml")
	require.NoError(t, os.WriteFile(a, []byte("version: 1\nowner: acme\nprune: {users: true}\nusers:\n  - email: x@acme.test\n"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("version: 1\nowner: other\nprune: {users: false}\nusers:\n  - email: X@acme.test\n"), 0o644))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))

	_, err := Load([]string{a, b, filepath.Join(dir, "missing.yaml"), empty}, nil)
	want := strings.Join([]string{
		b + `:2:8: owner "other" differs from "acme" set at ` + a + `:2:8: all files must have the same owner`,
		b + `:3:16: prune.users is false here but true at ` + a + `:3:16: the files that set prune.users must agree`,
		b + `:5:12: duplicate email "X@acme.test": ` + a + `:5:12 already declares it (emails compare case-insensitively); remove or merge one of the two users`,
		empty + `: the directory has no *.yaml or *.yml files: add one, or name the file itself`,
		filepath.Join(dir, "missing.yaml") + `: cannot read: no such file or directory; check the path`,
	}, "\n")
	assert.Equal(t, want, err.Error())

	_, err = Load(nil, nil)
	assert.EqualError(t, err, `no configuration files given: name a file or a directory with -f`)
}

// TestAllErrorsReportedSorted checks that one run reports every problem, in file
// order, whatever order the checks found them in.
func TestAllErrorsReportedSorted(t *testing.T) {
	doc := `version: 1
owner: Acme
metaMode: replace
users:
  - email: bad
    limits: { tokens: -1, messages: x }
    tokens:
      - name: ci
        rotateAfter: soon
      - name: ci
  - name: no email
    emial: a@acme.test
  - email: b@acme.test
  - email: B@acme.test
`
	_, err := LoadBytes("c.yaml", []byte(doc), nil)
	var errs Errors
	require.True(t, errors.As(err, &errs))
	assert.Equal(t, strings.Join([]string{
		`c.yaml:2:8: invalid owner "Acme": use 1 to 63 characters of a-z, 0-9 and -`,
		`c.yaml:3:11: metaMode must be "merge" (enforce the declared meta keys, keep others) or "exact" (the declared meta is the whole meta), not the string "replace"`,
		`c.yaml:5:12: invalid email "bad": it has no "@"; the platform accepts only a plain address such as name@example.com`,
		`c.yaml:6:23: limits.tokens is -1: a limit must be 0 or more`,
		`c.yaml:6:37: limits.messages must be a whole number, not the string "x"`,
		`c.yaml:9:22: rotateAfter: "soon" is not a duration: write a number with a unit, such as 30d, 720h or 90m (units: d, h, m, s, ms)`,
		`c.yaml:10:15: duplicate token name "ci": this user already declares it at line 8, column 15; rename or remove one`,
		`c.yaml:11:5: this user has no identity: add "email: <address>", "externalId: <your own key for the user>" or "id: <the platform's user id>"`,
		`c.yaml:12:5: unknown key "emial" in a user; did you mean "email"?`,
		`c.yaml:14:12: duplicate email "B@acme.test": c.yaml:13:12 already declares it (emails compare case-insensitively); remove or merge one of the two users`,
	}, "\n"), err.Error())
	assert.Len(t, errs, 10)
}
