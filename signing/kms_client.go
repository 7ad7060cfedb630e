//go:build dchain_client

package signing

// KMSBuiltIn says this build has the KMS providers: the client build
// (cmd/dchain's dchain_client tag) leaves their SDKs out, and hands a
// command that needs one over to dchain-server.
const KMSBuiltIn = false

// providers are the KMS schemes built in: none here.
func providers() []string { return nil }
