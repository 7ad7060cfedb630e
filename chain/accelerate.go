package chain

// Accelerated image formats (chain.accelerate).
const (
	// AccelerateEstargz: eStargz, gzip layers with a table of contents,
	// read lazily by containerd's stargz snapshotter (and by CRI-O and
	// podman through containers/storage); any other runtime pulls it as an
	// ordinary image.
	AccelerateEstargz = "estargz"
)

// AcceleratedSuffix is what an accelerated variant's tag adds to the tag
// of the image it was made from.
const AcceleratedSuffix = "_accelerated"

// AcceleratedTag is the tag of tag's accelerated variant, or "" when the
// tag is too long to carry the suffix.
func AcceleratedTag(tag string) string {
	t := tag + AcceleratedSuffix
	if !TagRe.MatchString(t) {
		return ""
	}
	return t
}

// AcceleratedTags are the accelerated tags of tags (those that can carry
// the suffix), in order.
func AcceleratedTags(tags []string) []string {
	var out []string
	for _, tag := range tags {
		if t := AcceleratedTag(tag); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func (v *validator) accelerate(c *Chain) {
	switch c.Accelerate {
	case "", AccelerateEstargz:
	default:
		v.add("accelerate", "%q is not a format; use estargz", c.Accelerate)
	}
	if c.Accelerate == "" || c.Signing != nil || v.cfg == nil {
		return
	}
	for _, r := range c.Replication {
		if reg, ok := v.cfg.Registry(r.Destination); ok && reg.RequireSignature {
			v.add("accelerate", "registry %q requires signed images, and only a signing key signs the accelerated variant (verify checks the pusher's signature of the image alone): add a signing section", reg.Name)
			return
		}
	}
}
