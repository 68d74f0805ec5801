package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	flag "github.com/spf13/pflag"
)

// buildVersion reports the module version and the commit this binary was
// built from, as far as the Go toolchain recorded them: "go install
// ...@v1.2.3" records the version; a build from a checkout records the
// commit unless VCS stamping is off (-buildvcs=false).
func buildVersion() (version, commit string, modified bool) {
	version = "(devel)"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version, "", false
	}
	if v := info.Main.Version; v != "" {
		version = v
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return version, commit, modified
}

type versionOutput struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "Print the version and commit of this program.",
		usage:   "version [--json]",
		example: prog + " version",
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			var asJSON bool
			jsonFlag(fs, &asJSON)
			return func(_ context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usagef("version takes no arguments")
				}
				v, commit, modified := buildVersion()
				out := versionOutput{Version: v, Commit: commit, Modified: modified, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
				if asJSON {
					return writeJSON(e, out)
				}
				line := prog + " " + v
				if commit != "" {
					line += " commit " + commit
					if modified {
						line += " (modified)"
					}
				}
				fmt.Fprintf(e.stdout, "%s, %s %s\n", line, out.Go, out.Platform)
				return nil
			}
		},
	}
}
