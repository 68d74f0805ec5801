// Package testutil holds nothing itself; its subpackages are the code only
// tests use, kept apart from the production packages under internal/ so a
// reader can tell the two at a glance:
//
//	testregistry  a real distribution registry process, token server and proxy
//	testimage     image builders: layers, layouts, archives, pushed images
//	faultproxy    an HTTP proxy that cuts, stalls and corrupts responses
//	specschema    the runtime-spec JSON schemas, for checking bundles
//	cosigntest    the real cosign binary: key pairs and image signatures
//
// No production package may import them.
package testutil
