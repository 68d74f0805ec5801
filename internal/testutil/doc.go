// Package testutil is the code only tests use, kept apart from the
// production packages under internal/ so a reader can tell the two at a
// glance. Itself it holds every package's TestMain (Main: no race-runtime
// sleep at exit, and under -short the scratch on /dev/shm, ShortScratch),
// the two test tiers' one rule (Scale, First, Full),
// the one way to treat an absent tool (Missing, Tool: a skip locally, a
// failure in CI), the CRC forger of the integrity tests (ForgeCRC), and
// the check that the docs cite only tests that exist;
// its subpackages hold the rest:
//
//	testregistry  a real distribution registry process, token server and proxy
//	testimage     image builders: layers, layouts, archives, pushed images
//	faultproxy    an HTTP proxy that cuts, stalls and corrupts responses
//	hostile       an in-process registry whose requests a test can take over
//	specschema    the runtime-spec JSON schemas, for checking bundles
//	cosigntest    the real cosign binary: key pairs and image signatures
//	testcerts     throwaway certificate authorities and server certificates
//	netns         network namespaces for the address-rule tests
//
// No production package may import them.
package testutil
