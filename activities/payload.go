package activities

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path"
	"strings"
	"time"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// Headers a trigger delivery carries.
const (
	HeaderSignature   = "X-Dchain-Signature-256" // "sha256=" + hex HMAC-SHA256 of the body
	HeaderDelivery    = "X-Dchain-Delivery"      // the idempotency key
	HeaderIdempotency = "Idempotency-Key"        // the same key, under its common name
	HeaderEvent       = "X-Dchain-Event"
	HeaderRun         = "X-Dchain-Run"
)

// acrTime is the ACR trigger's time format, in UTC+8 like the vendor's.
var acrZone = time.FixedZone("UTC+8", 8*3600)

const acrTimeLayout = "2006-01-02 15:04:05"

// ACRPayload is the vendor's trigger notification body.
type ACRPayload struct {
	PushData   ACRPushData   `json:"push_data"`
	Repository ACRRepository `json:"repository"`
	// Signing is dchain's, not the vendor's: the signature and
	// attestations the delivered image carries (when the chain signs or
	// verifies).
	Signing *workflows.SigningRef `json:"signing,omitempty"`
}

// ACRPushData describes the pushed image.
type ACRPushData struct {
	Digest   string `json:"digest"`
	PushedAt string `json:"pushed_at"`
	Tag      string `json:"tag"`
}

// ACRRepository describes the image's repository.
type ACRRepository struct {
	DateCreated            string `json:"date_created"`
	Name                   string `json:"name"`
	Namespace              string `json:"namespace"`
	Region                 string `json:"region"`
	RepoAuthenticationType string `json:"repo_authentication_type"`
	RepoFullName           string `json:"repo_full_name"`
	RepoOriginType         string `json:"repo_origin_type"`
	RepoType               string `json:"repo_type"`
}

// CloudEvent is a CloudEvents 1.0 event in structured JSON mode.
type CloudEvent struct {
	SpecVersion     string                 `json:"specversion"`
	ID              string                 `json:"id"`
	Source          string                 `json:"source"`
	Type            string                 `json:"type"`
	Subject         string                 `json:"subject"`
	Time            time.Time              `json:"time"`
	DataContentType string                 `json:"datacontenttype"`
	Data            workflows.TriggerEvent `json:"data"`
}

// CloudEvent types: a delivery (triggers), and an approval request
// (approval.notify).
const (
	CloudEventType         = "dev.dchain.image.delivered"
	CloudEventTypeApproval = "dev.dchain.approval.requested"
)

// EventName is the X-Dchain-Event of a delivery: "trigger", or "approval"
// for an approval request.
func EventName(ev workflows.TriggerEvent) string {
	if ev.Approval != nil {
		return "approval"
	}
	return workflows.StageTrigger
}

// TriggerBody renders the delivery body and its content type. The same input
// always gives the same bytes, so every retry sends what the signature signs.
func TriggerBody(format, key string, ev workflows.TriggerEvent) ([]byte, string, error) {
	if format == chain.FormatCloudEvents {
		typ := CloudEventType
		if ev.Approval != nil {
			typ = CloudEventTypeApproval
		}
		b, err := json.Marshal(CloudEvent{
			SpecVersion: "1.0", ID: key, Source: "dchain/chains/" + ev.Chain, Type: typ,
			Subject: ev.Repository + ":" + ev.Tag, Time: ev.PushedAt.UTC(), DataContentType: "application/json", Data: ev,
		})
		return b, "application/cloudevents+json", err
	}
	ns, name := path.Split(ev.Repository)
	pushed := ev.PushedAt.In(acrZone).Format(acrTimeLayout)
	b, err := json.Marshal(ACRPayload{
		PushData: ACRPushData{Digest: ev.Digest, PushedAt: pushed, Tag: ev.Tag},
		Repository: ACRRepository{
			// dchain does not know when the repository was created; the push time stands in.
			DateCreated: pushed, Name: name, Namespace: strings.TrimSuffix(ns, "/"), Region: ev.Region,
			RepoAuthenticationType: "NO_CERTIFIED", RepoFullName: ev.Repository, RepoOriginType: "NO_CERTIFIED", RepoType: "PRIVATE",
		},
		Signing: ev.Signing,
	})
	return b, "application/json", err
}

// Sign is the value of HeaderSignature for body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a HeaderSignature value in constant time.
func VerifySignature(secret string, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}
