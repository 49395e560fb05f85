package main

// Pins the project's dependencies in go.mod while the packages that use them are
// being written in parallel; removed once every one is imported for real.
import (
	_ "github.com/alecthomas/kong"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/sergi/go-diff/diffmatchpatch"
	_ "github.com/stretchr/testify/assert"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
	_ "golang.org/x/time/rate"
	_ "gopkg.in/yaml.v3"
)

func main() {}
