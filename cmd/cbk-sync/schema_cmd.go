package main

import "github.com/cbk-sync/cbk-sync/internal/config"

// SchemaCmd prints the JSON Schema of the configuration format, for editors.
type SchemaCmd struct{}

// Run prints the schema.
func (c *SchemaCmd) Run(env *Env) error {
	_, err := env.IO.Out.Write(config.Schema())
	return err
}
