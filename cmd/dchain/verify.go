package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/dchain-dev/dchain/activities"
	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/signing"
	"github.com/dchain-dev/dchain/workflows"
)

// verifyReport is `dchain verify -o json`.
type verifyReport struct {
	Image    string                 `json:"image"`
	Digest   string                 `json:"digest"`
	Result   workflows.Verification `json:"result"`
	Verified []verifiedBundle       `json:"verified"`
	Rejected []signing.Rejected     `json:"rejected,omitempty"`
	Missing  []string               `json:"missing,omitempty"`
}

type verifiedBundle struct {
	Digest        string       `json:"digest"`
	PredicateType string       `json:"predicateType"`
	Key           chain.KeyRef `json:"key"`
}

// attestationTypes are --require's names, as cosign's --type names them.
var attestationTypes = map[string][]string{
	chain.AttestProvenance: {signing.PredicateSLSAProvenance, signing.PredicateSLSAProvenance1},
	chain.AttestSBOM:       {signing.PredicateCycloneDX},
	chain.AttestScan:       {signing.PredicateVuln},
}

func newVerifyCmd(g *globals) *cobra.Command {
	var registry, output, source, builder string
	var keys []string
	var require []string
	exitCode := 1
	cmd := &cobra.Command{
		Use:   "verify NAMESPACE/REPO:TAG --key K [--require provenance,sbom,scan]",
		Short: "Check an image's signature and attestations in a registry (any region), as a cluster would before it deploys",
		Long: `Verify reads the sigstore bundles attached to the image (the referrers a chain's
sign stage and cosign write) and checks each against the keys: a signature by
one of them must be there, and each --require'd attestation. The exit code is
--exit-code (default 1) when the image does not pass, like trivy's.

Keys are references: file:PATH, env:NAME (a PEM public or private key) or a
KMS URI (awskms://, gcpkms://, azurekms://, hashivault://). Without --key, the
keys of the chains that cover the repository are used (their verify.keys and
the public half of their signing.key).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			for _, r := range require {
				if _, ok := attestationTypes[r]; !ok {
					return fmt.Errorf("--require: %q is not an attestation; use provenance, sbom or scan", r)
				}
			}
			kms := func(refs []chain.KeyRef) bool {
				return !signing.KMSBuiltIn && slices.ContainsFunc(refs, chain.KeyRef.KMS)
			}
			flagged := make([]chain.KeyRef, len(keys))
			for i, k := range keys {
				flagged[i] = chain.KeyRef(k)
			}
			if kms(flagged) {
				return kmsHandOver() // before anything is read: dchain-server does it all
			}
			reg, repo, tag, err := g.scanTarget(registry, args[0])
			if err != nil {
				return err
			}
			refs, err := g.verifyKeys(keys, reg, repo)
			if err != nil {
				return err
			}
			if kms(refs) {
				return kmsHandOver()
			}
			ctx := cmd.Context()
			pubs, err := signing.LoadPublicKeys(ctx, refs)
			if err != nil {
				return err
			}
			a := &activities.Activities{}
			info, err := a.ResolveImage(ctx, workflows.ResolveImageInput{Registry: reg, Image: workflows.ImageRef{Registry: reg.Name, Repository: repo, Tag: tag}})
			if err != nil {
				return err
			}
			digest, err := v1.NewHash(info.Digest)
			if err != nil {
				return err
			}
			bs, err := a.Attached(ctx, reg, repo, digest)
			if err != nil {
				return err
			}
			v := signing.Check(bs, digest, pubs)
			rule := chain.Verify{Keys: refs}
			if source != "" || builder != "" {
				rule.Provenance = &chain.ProvenanceRule{Repository: source, Builder: builder}
			}
			rep := verifyReport{Image: reg.Address + "/" + repo + ":" + tag, Digest: info.Digest, Result: activities.Judge(v, rule), Rejected: v.Rejected}
			for _, x := range v.Verified {
				rep.Verified = append(rep.Verified, verifiedBundle{Digest: x.Digest.String(), PredicateType: x.PredicateType, Key: x.Key})
			}
			for _, r := range require {
				if !slices.ContainsFunc(attestationTypes[r], func(t string) bool { return len(v.Find(t)) > 0 }) {
					rep.Missing = append(rep.Missing, r)
				}
			}
			if output == "json" {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printVerify(cmd.OutOrStdout(), rep)
			}
			if !rep.Result.Verified || len(rep.Missing) > 0 {
				if exitCode == 0 {
					return nil
				}
				return &exitError{code: exitCode}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&keys, "key", nil, "public key(s) a signature may be made with: file:PATH, env:NAME or a KMS URI (repeatable)")
	cmd.Flags().StringSliceVar(&require, "require", nil, "attestations that must be there, signed by a key: provenance, sbom, scan")
	cmd.Flags().StringVar(&source, "provenance-repository", "", "require a provenance naming this source repository URL")
	cmd.Flags().StringVar(&builder, "provenance-builder", "", "require a provenance naming this builder ID (dchain's: "+activities.BuilderID+")")
	cmd.Flags().IntVar(&exitCode, "exit-code", 1, "exit with this code when the image does not pass (0: always 0)")
	cmd.Flags().StringVar(&registry, "registry", "", "registry of the image (default: the first registry of the config)")
	outputFlag(cmd, &output)
	return cmd
}

// verifyKeys are --key's references, checked, or the keys of the chains
// covering repo in reg.
func (g *globals) verifyKeys(flags []string, reg chain.Registry, repo string) ([]chain.KeyRef, error) {
	var refs []chain.KeyRef
	for _, k := range flags {
		r := chain.KeyRef(k)
		if err := r.Check(); err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		refs = append(refs, r)
	}
	if len(refs) > 0 {
		return refs, nil
	}
	loaded, err := chain.Load(g.config)
	if err != nil {
		return nil, err
	}
	for _, c := range loaded.Chains {
		if !c.Scope.Covers(repo) {
			continue
		}
		if c.Verify != nil {
			refs = append(refs, c.Verify.Keys...)
		}
		if c.Signing != nil {
			refs = append(refs, c.Signing.Key)
		}
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	if len(refs) == 0 {
		return nil, fmt.Errorf("no --key, and no chain of %s that covers %s signs or verifies: give --key", g.config, repo)
	}
	return refs, nil
}

func printVerify(w io.Writer, r verifyReport) {
	fmt.Fprintf(w, "Image:    %s\nDigest:   %s\n", r.Image, r.Digest)
	for _, x := range r.Verified {
		fmt.Fprintf(w, "Verified: %-48s %s by %s\n", x.PredicateType, x.Digest, x.Key)
	}
	for _, x := range r.Rejected {
		pt := x.PredicateType
		if pt == "" {
			pt = "(unknown type)"
		}
		fmt.Fprintf(w, "Rejected: %-48s %s: %s\n", pt, x.Digest, x.Reason)
	}
	if len(r.Missing) > 0 {
		fmt.Fprintf(w, "Missing:  %s\n", strings.Join(r.Missing, ", "))
	}
	if r.Result.Verified && len(r.Missing) == 0 {
		fmt.Fprintf(w, "Result:   PASS — signed by %s\n", r.Result.SignedBy)
		return
	}
	reason := r.Result.Reason
	if reason == "" {
		reason = "no signed " + strings.Join(r.Missing, ", ")
	}
	fmt.Fprintf(w, "Result:   FAIL — %s\n", reason)
}
