package source

import (
	"runtime/debug"
	"strings"
)

const modulePath = "github.com/ocifetch/ocifetch"

// Version is the version of this module as the build recorded it: the
// module version of the program or of the dependency, "devel" when it is
// unknown (a plain "go build" of a checkout without version control
// information).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := ""
	if bi.Main.Path == modulePath {
		v = bi.Main.Version
	} else {
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				v = d.Version
				if d.Replace != nil && d.Replace.Version != "" {
					v = d.Replace.Version
				}
				break
			}
		}
	}
	if v == "" || v == "(devel)" {
		return "devel"
	}
	return v
}

// DefaultUserAgent is the User-Agent sent unless WithUserAgent replaces
// it: "ocifetch/" and Version.
func DefaultUserAgent() string { return "ocifetch/" + strings.TrimSpace(Version()) }
