//go:build unix

package lease

import (
	"errors"
	"syscall"
)

// processExists reports whether a process with this ID exists on this host. Only a
// definite "no such process" counts as gone: a process of another user (EPERM) exists.
func processExists(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
