package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/cbk-sync/cbk-sync/internal/config"
)

// learnSecrets teaches the run's redactor every credential the run can see, before
// any command reads a file or prints a line: the API token of every variable it may
// come from and of every --api-token-file given (a file that cannot be read is
// reported by the command, later, as before), and the pushgateway password.
func learnSecrets(kctx *kong.Context, env *Env, mf *MetricsFlags) {
	for _, k := range tokenEnvVars {
		if v, ok := env.IO.lookupEnv(k); ok {
			env.redact.Add(v)
		}
	}
	for _, f := range kctx.Flags() {
		if f.Name != "api-token-file" {
			continue
		}
		if path, _ := kctx.FlagValue(f).(string); path != "" {
			if b, err := readTokenFile(path); err == nil {
				env.redact.Add(string(b))
			}
		}
	}
	if pw, ok := env.IO.lookupEnv(pushgatewayPasswordEnv); ok {
		env.redact.Add(pw)
	}
	if mf != nil {
		// Refused by MetricsFlags.Validate, but an error may show the URL first.
		if u, err := url.Parse(mf.Pushgateway); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok {
				env.redact.Add(pw)
			}
		}
	}
}

// credentialPrefix names the variables a configuration may never expand: the API
// token's (tokenEnvVars) and every other CHATBOTKIT_API_* setting.
const credentialPrefix = "CHATBOTKIT_API_"

// configEnv is the environment a configuration's ${VAR} sees: every variable but the
// credentials, and no value that holds a known secret, each refused at its position
// with what to do instead.
func (env *Env) configEnv() config.Env {
	return config.Env{
		Lookup: env.IO.lookupEnv,
		Refuse: func(name, value string) error {
			if strings.HasPrefix(name, credentialPrefix) {
				return fmt.Errorf("${%s} is a credential of cbk-sync itself, which a configuration may not use (it would be shown in plans and written remotely); use another variable", name)
			}
			if env.redact.Contains(value) {
				return fmt.Errorf("${%s} holds a secret (the API token, or a piece of it), which a configuration may not use (it would be shown in plans and written remotely); use another variable", name)
			}
			return nil
		},
	}
}
