//go:build !unix

package atomicfile

func isUnsupported(error) bool { return true }
