//go:build !unix

package apply

const noFollowNonBlock = 0

func isSymlinkRefused(error) bool { return false }
