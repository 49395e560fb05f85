// Command cbk-sync keeps ChatBotKit partner users and their API tokens equal to what
// reviewed YAML files say: it plans, shows the plan, and applies it.
package main

import "os"

func main() { os.Exit(Main(os.Args[1:])) }
