package chain

import (
	"regexp"
	"strconv"
	"time"
)

// Approval makes a run wait, after its scan, policy and signing and before
// any copy, until a listed approver approves or rejects it (or the timeout
// decides). The wait is a Temporal timer and an Update: it survives restarts
// of every process and may last days.
type Approval struct {
	// Approvers may decide: API token names (api.tokens) and CLI identities
	// (DCHAIN_IDENTITY, or the user name).
	Approvers []string `yaml:"approvers" json:"approvers"`
	// Timeout ends the wait (default 72h); OnTimeout says how: "reject"
	// (default) or "approve".
	Timeout   Duration `yaml:"timeout" json:"timeout,omitempty"`
	OnTimeout string   `yaml:"onTimeout" json:"onTimeout,omitempty"`
	// Notify, when set, is told that a run waits (a CloudEvent
	// dev.dchain.approval.requested, signed and retried as a trigger's).
	Notify *ApprovalNotify `yaml:"notify" json:"notify,omitempty"`
}

// ApprovalNotify is where an approval request is delivered.
type ApprovalNotify struct {
	URL string `yaml:"url" json:"url"`
	// Secret, when set, is a reference to the HMAC-SHA256 signing key.
	Secret SecretRef `yaml:"secret" json:"secret,omitempty"`
}

// What a timed-out approval becomes.
const (
	OnTimeoutReject  = "reject"
	OnTimeoutApprove = "approve"
)

// Approval limits.
const (
	DefaultApprovalTimeout = 72 * time.Hour
	MaxApprovalTimeout     = 365 * 24 * time.Hour
	MaxApprovers           = 50
)

// IdentityRe is what an approver's identity (an API token's name, a CLI
// identity) may be: it is shown in runs and compared, never interpreted.
var IdentityRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)

// TimeoutOr is the approval's timeout, or the default.
func (a *Approval) TimeoutOr() time.Duration { return a.Timeout.Or(DefaultApprovalTimeout) }

// NotifyTrigger is the notification as a trigger (delivered the same way).
func (a *Approval) NotifyTrigger() Trigger {
	return Trigger{Name: "approval", URL: a.Notify.URL, Mode: TriggerAll, Format: FormatCloudEvents, Secret: a.Notify.Secret}
}

// MayApprove says whether identity is one of the approvers.
func (a *Approval) MayApprove(identity string) bool {
	for _, x := range a.Approvers {
		if x == identity {
			return true
		}
	}
	return false
}

// AsksApproval says whether a run of c may wait for an approver: before
// any copy, or before a wave.
func (c Chain) AsksApproval() bool {
	if c.Approval != nil {
		return true
	}
	for _, w := range c.Waves {
		if w.Approval != nil {
			return true
		}
	}
	return false
}

func (v *validator) approval(f string, a *Approval) {
	if len(a.Approvers) == 0 {
		v.add(f+".approvers", "at least one approver is required (API token names or CLI identities)")
	}
	v.max(f+".approvers", len(a.Approvers), MaxApprovers)
	seen := map[string]string{}
	for i, who := range a.Approvers {
		g := f + ".approvers[" + strconv.Itoa(i) + "]"
		v.identity(g, who)
		v.unique(seen, g, who)
	}
	if a.Timeout < 0 || time.Duration(a.Timeout) > MaxApprovalTimeout || (a.Timeout > 0 && time.Duration(a.Timeout) < time.Minute) {
		v.add(f+".timeout", "%s must be between 1m and %s", time.Duration(a.Timeout), MaxApprovalTimeout)
	}
	switch a.OnTimeout {
	case "", OnTimeoutReject, OnTimeoutApprove:
	default:
		v.add(f+".onTimeout", "%q is not a choice; use reject or approve", a.OnTimeout)
	}
	if a.Notify != nil {
		v.url(f+".notify.url", a.Notify.URL)
		v.secret(f+".notify.secret", a.Notify.Secret)
	}
}

// identity checks an approver's or an API token's name.
func (v *validator) identity(f, who string) {
	if v.required(f, who) && !IdentityRe.MatchString(who) {
		v.add(f, "%q must be 1-128 letters, digits, '.', '_', '@', '+' or '-', starting with a letter or digit", who)
	}
}
