// Command cbk-sync keeps ChatBotKit partner users and their API tokens equal to what
// reviewed YAML files say: it plans, shows the plan, and applies it.
package main

import (
	"os"

	// The container image is FROM scratch: one static file and nothing to patch. With
	// no system certificate store there, TLS falls back to the Mozilla roots embedded
	// here; wherever the system has a store, the system store is used.
	_ "golang.org/x/crypto/x509roots/fallback"
)

func main() { os.Exit(Main(os.Args[1:])) }
