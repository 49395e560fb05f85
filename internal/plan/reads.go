package plan

import "github.com/cbk-sync/cbk-sync/internal/state"

// ActualReads is what a plan of a desired state reads of the remote one besides the
// user listing, decided here once and read by the client (client.ReadWithAliases) for
// the command and the benchmark alike: Tokens selects the users whose token lists are
// read while the listing streams (TokenListsToRead), Aliases the declared aliases
// looked up once every user is listed (AliasesToRead; a fetch each, not a poll).
type ActualReads struct {
	Tokens  func(state.User) bool
	Aliases func(users []state.User) []string
}

// ToRead returns what a plan of d reads; a non-nil need narrows the token lists to the
// users of its identity keys, as in TokenListsToRead.
func ToRead(d state.Desired, need map[string]bool) ActualReads {
	managed := TokenListsToRead(d, need)
	return ActualReads{
		Tokens:  func(u state.User) bool { return managed.Has(&u) },
		Aliases: func(users []state.User) []string { return AliasesToRead(d, users) },
	}
}
