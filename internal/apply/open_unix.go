//go:build unix

package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

const noFollowNonBlock = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

func isSymlinkRefused(err error) bool { return errors.Is(err, syscall.ELOOP) }

// CheckOwner refuses a file or directory that the running user does not own: its
// owner (root running cbk-sync, say) could read every secret written to it.
func CheckOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("%s is owned by uid %d, not by the user running cbk-sync (uid %d), who would share every secret written to it; use a file of your own, or chown it", path, st.Uid, uid)
	}
	return nil
}

// linkCount is how many names fi's file has; 0 once it is deleted.
func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink) //nolint:unconvert // Nlink is uint16 on darwin, uint64 on linux
	}
	return 1
}
