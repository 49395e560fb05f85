package plan

import (
	"fmt"
	"strings"
)

// Census counts the remote users a plan read, by how they relate to the files: the
// whole account in view, so that users the files do not cover yet (a customer the
// partner's app signed up since the last commit) can be seen and alerted on. Lease
// users (another run's lock) are not counted.
type Census struct {
	// Seen is every user read: the sum of the four counts below.
	Seen int `json:"seen"`
	// Declared are the users a declared user was matched to.
	Declared int `json:"declared"`
	// OwnedUndeclared are owned users no file declares: orphans, and the users the
	// plan deletes or releases.
	OwnedUndeclared int `json:"owned_undeclared"`
	// Unmanaged are users without an owner marker that no file declares.
	Unmanaged int `json:"unmanaged"`
	// Foreign are users another owner manages that no file declares.
	Foreign int `json:"foreign"`
}

// NotDeclared is the number of users seen that no file declares.
func (c Census) NotDeclared() int { return c.OwnedUndeclared + c.Unmanaged + c.Foreign }

// Line is the census in one sentence, for the text and Markdown views:
// "312 users seen: 300 declared, 11 unmanaged, 1 foreign; 12 not declared."
func (c Census) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s seen: %d declared", Count(c.Seen, "user", "users"), c.Declared)
	if c.OwnedUndeclared > 0 {
		fmt.Fprintf(&b, ", %d owned and not declared", c.OwnedUndeclared)
	}
	fmt.Fprintf(&b, ", %d unmanaged, %d foreign; %d not declared.", c.Unmanaged, c.Foreign, c.NotDeclared())
	return b.String()
}

// census counts users (lease users already left out) by ownership and match.
func census(owners []ownership, matchedBy []int32) *Census {
	c := &Census{Seen: len(owners)}
	for i, o := range owners {
		switch {
		case matchedBy[i] != 0:
			c.Declared++
		case o == owned:
			c.OwnedUndeclared++
		case o == foreign:
			c.Foreign++
		default:
			c.Unmanaged++
		}
	}
	return c
}
