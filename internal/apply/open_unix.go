//go:build unix

package apply

import (
	"errors"
	"syscall"
)

const noFollowNonBlock = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

func isSymlinkRefused(err error) bool { return errors.Is(err, syscall.ELOOP) }
