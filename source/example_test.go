package source_test

import (
	"fmt"

	"github.com/ocifetch/ocifetch/source"
)

// --insecure-registry's values: a host for every port, or one port; a URL
// is refused with what to write instead.
func ExampleParseHost() {
	for _, h := range []string{"Registry.Local", "registry.local:5000", "http://registry.local:5000"} {
		host, err := source.ParseHost(h)
		fmt.Printf("%q %v\n", host, err)
	}
	// Output:
	// "registry.local" <nil>
	// "registry.local:5000" <nil>
	// "" "http://registry.local:5000" is a URL: give the host without http://, as registry.local (every port) or registry.local:5000
}
