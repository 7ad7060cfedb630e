package devstack

import (
	"context"
	"crypto/elliptic"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// BenchmarkSigningCost measures what signing and attesting add to a tiny
// run, replicated to two regions and announced to one trigger, with and
// without a signing section:
//   - build: a one-platform build of a fresh commit of a tiny repository
//     (BuildKit's cache warm), scanned; signed with the signature,
//     BuildKit's provenance (max mode), an SBOM and the scan;
//   - push: a fresh one-layer image pushed, scanned; signed with the
//     signature, an SBOM and the scan.
//
// The signatures and attestations are replicated too. Each iteration runs
// one pair, in alternating order; it reports the median of each and the
// overhead of the medians.
func BenchmarkSigningCost(b *testing.B) {
	priv, _, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.SkipPassword)
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("DCHAIN_BENCH_SIGNING_KEY", string(priv))
	scan := chain.Scan{Mode: chain.ModeBlocking, Conditions: []chain.Condition{{Severity: "CRITICAL", Count: 1000}}, Action: chain.ActionBlock,
		Unscannable: chain.UnscannableAllow} // a random image: no OS, no packages
	pair := func(make func(name string) *chain.Loaded) (plain, signed *chain.Loaded) {
		plain, signed = make("bench-unsigned"), make("bench-signed")
		for _, l := range []*chain.Loaded{plain, signed} {
			l.Chains[0].Scan = &scan
			l.Chains[0].Triggers = l.Chains[0].Triggers[1:]
			for i := range l.Chains[0].Replication {
				l.Chains[0].Replication[i].Overwrite = true // latest, built again
			}
		}
		signed.Chains[0].Signing = &chain.Signing{Key: "env:DCHAIN_BENCH_SIGNING_KEY"}
		return plain, signed
	}
	measure := func(b *testing.B, plain, signed *chain.Loaded, start func(l *chain.Loaded, i int) string) {
		var cpuOff, cpuOn []time.Duration
		run := func(l *chain.Loaded, i int) time.Duration {
			b.StopTimer()
			id := start(l, i)
			b.StartTimer()
			t0, c0 := time.Now(), machineCPU(b)
			st := waitRun(b, id, time.Minute)
			took, cpu := time.Since(t0), machineCPU(b)-c0
			if l == signed {
				cpuOn = append(cpuOn, cpu)
			} else {
				cpuOff = append(cpuOff, cpu)
			}
			if st.Outcome != workflows.OutcomeSucceeded {
				b.Fatalf("outcome %s: %s", st.Outcome, st.Message)
			}
			if l == signed && (st.Signing == nil || st.Signing.Signed == nil || len(st.Signing.Signed.Missing) > 0) {
				b.Fatalf("signing %+v", st.Signing)
			}
			return took
		}
		var off, on []time.Duration
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				off = append(off, run(plain, i))
				on = append(on, run(signed, i))
			} else {
				on = append(on, run(signed, i))
				off = append(off, run(plain, i))
			}
		}
		median := func(d []time.Duration) time.Duration { s := slices.Clone(d); slices.Sort(s); return s[len(s)/2] }
		mOff, mOn := median(off), median(on)
		b.ReportMetric(float64(mOff.Microseconds())/1000, "ms/unsigned")
		b.ReportMetric(float64(mOn.Microseconds())/1000, "ms/signed")
		b.ReportMetric(100*(float64(mOn)/float64(mOff)-1), "%overhead")
		b.ReportMetric(float64(median(cpuOff).Milliseconds()), "cpu-ms/unsigned")
		b.ReportMetric(float64(median(cpuOn).Milliseconds()), "cpu-ms/signed")
	}

	b.Run("build", func(b *testing.B) {
		src := filepath.Join(b.TempDir(), "tiny")
		writeRepo(b, src, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY n.txt /n.txt\n", "n.txt": "0"})
		plain, signed := pair(func(name string) *chain.Loaded { return buildChain(b, name, "bench/built", src, "linux/amd64") })
		measure(b, plain, signed, func(l *chain.Loaded, i int) string {
			commit(b, src, map[string]string{"n.txt": fmt.Sprintf("%s %d %d", l.Chains[0].Name, i, time.Now().UnixNano())})
			return startPush(b, l, "refs/heads/main", false).WorkflowID
		})
	})
	b.Run("push", func(b *testing.B) {
		plain, signed := pair(func(name string) *chain.Loaded { l, _ := testChain(name, "bench/tiny"); return l })
		measure(b, plain, signed, func(l *chain.Loaded, i int) string {
			img, err := random.Image(1024, 1)
			if err != nil {
				b.Fatal(err)
			}
			tag := fmt.Sprintf("%s-%d-%d", l.Chains[0].Name, i, time.Now().UnixNano())
			ref, _ := name.ParseReference(stack.Endpoints.Registries["src"]+"/bench/tiny:"+tag, name.Insecure)
			if err := remote.Write(ref, img, remote.WithContext(context.Background())); err != nil {
				b.Fatal(err)
			}
			return startRun(b, l, "bench/tiny:"+tag).WorkflowID
		})
	})
}

// machineCPU is the CPU time all of the machine's processes (the stack's,
// buildkitd's) have used so far: the busy time of /proc/stat's cpu line.
func machineCPU(b *testing.B) time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 7 { // not idle, iowait, steal, nor guest (counted in user)
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}
