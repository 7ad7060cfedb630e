// Package signing signs what a chain delivers and verifies what it is
// given, in the formats the sigstore ecosystem reads: each signature and
// attestation is a sigstore bundle (v0.3) holding a DSSE envelope of an
// in-toto statement about the image's digest, stored as an OCI 1.1
// referrer of the image (or under the referrers tag scheme where a
// registry has no referrers API), as `cosign sign` and `cosign attest`
// store them, so `cosign verify --key` and `cosign verify-attestation`
// check them and they travel with the image wherever it is copied.
//
// Keys come from a file, an environment variable or a KMS (sigstore's
// providers). Nothing here uploads to a transparency log: signing is
// offline, and verification trusts the listed keys alone.
package signing
