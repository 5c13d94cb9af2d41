package tenant_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/o2-extension/o2-extension/internal/tenant"
)

// emfDoc is the Embedded Metric Format structure (the "_aws" metadata).
type emfDoc struct {
	AWS struct {
		Timestamp         *int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  *string    `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []struct {
				Name string `json:"Name"`
				Unit string `json:"Unit"`
			} `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	} `json:"_aws"`
}

// checkEMF validates one EMF line against the specification's structure
// and returns its top-level members.
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
func checkEMF(t *testing.T, line, ns, metric, dim string) map[string]any {
	t.Helper()
	if strings.Contains(line, "\n") {
		t.Fatalf("EMF line spans lines: %q", line)
	}
	var doc emfDoc
	if err := json.Unmarshal([]byte(line), &doc); err != nil {
		t.Fatalf("EMF line is not JSON: %v\n%s", err, line)
	}
	var top map[string]any
	if err := json.Unmarshal([]byte(line), &top); err != nil {
		t.Fatal(err)
	}
	a := doc.AWS
	if a.Timestamp == nil || *a.Timestamp <= 0 {
		t.Errorf("_aws.Timestamp missing or not positive")
	}
	if len(a.CloudWatchMetrics) != 1 {
		t.Fatalf("_aws.CloudWatchMetrics has %d directives, want 1", len(a.CloudWatchMetrics))
	}
	d := a.CloudWatchMetrics[0]
	if d.Namespace == nil || *d.Namespace != ns {
		t.Errorf("Namespace = %v, want %q", d.Namespace, ns)
	}
	if len(d.Dimensions) != 1 || len(d.Dimensions[0]) != 1 || d.Dimensions[0][0] != dim {
		t.Errorf("Dimensions = %v, want [[%s]]", d.Dimensions, dim)
	}
	if len(d.Metrics) != 1 || d.Metrics[0].Name != metric || d.Metrics[0].Unit != "Megabytes" {
		t.Errorf("Metrics = %+v, want [{%s Megabytes}]", d.Metrics, metric)
	}
	// The spec: every dimension and metric named must be a top-level
	// member, the dimension a string and the metric a number.
	if _, ok := top[dim].(string); !ok {
		t.Errorf("dimension %q = %#v, want a string member", dim, top[dim])
	}
	if _, ok := top[metric].(float64); !ok {
		t.Errorf("metric %q = %#v, want a number member", metric, top[metric])
	}
	return top
}

func TestEMF(t *testing.T) {
	at := time.Date(2025, 6, 1, 8, 0, 0, 358_000_000, time.UTC)
	tests := []struct {
		name             string
		o                tenant.Options
		ns, metric, dim  string
		tenantID, report string
		wantLine         bool
		wantMem          float64
	}{
		{
			name: "defaults",
			ns:   "CustomerMemoryReport", metric: "CustomerMemoryUsage", dim: "CustomerId",
			tenantID: "acme", wantLine: true, wantMem: 78,
			report: `{"requestId":"` + reqA + `","metrics":{"durationMs":42.6,"billedDurationMs":43,"memorySizeMB":512,"maxMemoryUsedMB":78}}`,
		},
		{
			name: "custom names",
			o:    tenant.Options{EMFNamespace: "Acme/Lambda", EMFMetric: "MemMB", EMFDimension: "Tenant"},
			ns:   "Acme/Lambda", metric: "MemMB", dim: "Tenant",
			tenantID: `we"ird`, wantLine: true, wantMem: 130,
			report: `{"requestId":"` + reqA + `","metrics":{"durationMs":1,"billedDurationMs":1,"memorySizeMB":256,"maxMemoryUsedMB":130}}`,
		},
		{
			name: "numeric tenant is a string dimension",
			ns:   "CustomerMemoryReport", metric: "CustomerMemoryUsage", dim: "CustomerId",
			tenantID: "42", wantLine: true, wantMem: 64,
			report: `{"requestId":"` + reqA + `","metrics":{"maxMemoryUsedMB":64}}`,
		},
		{
			name:     "no memory in the report, no metric",
			tenantID: "acme",
			report:   `{"requestId":"` + reqA + `","metrics":{"durationMs":12.5}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			o := tt.o
			o.EMF, o.EMFOut = true, &out
			tr := tenant.New(o)
			idJSON, _ := json.Marshal(tt.tenantID)
			if tt.tenantID == "42" {
				idJSON = []byte("42")
			}
			mark := textLog(at.Add(-time.Second), reqA, `{"message":"customer-memory-report","customerId":`+string(idJSON)+`}`)
			tr.Observe(&mark, at)
			rep := telemetry.Event{Time: at, Type: "platform.report", Record: json.RawMessage(tt.report), RequestID: reqA}
			if n := len(tr.Observe(&rep, at)); n != 1 {
				t.Fatalf("got %d records, want 1", n)
			}
			if !tt.wantLine {
				if out.Len() != 0 {
					t.Fatalf("wrote %q, want nothing", out.String())
				}
				return
			}
			line, ok := strings.CutSuffix(out.String(), "\n")
			if !ok {
				t.Fatalf("output %q is not one newline-terminated line", out.String())
			}
			top := checkEMF(t, line, tt.ns, tt.metric, tt.dim)
			if top[tt.dim] != tt.tenantID {
				t.Errorf("%s = %v, want %q", tt.dim, top[tt.dim], tt.tenantID)
			}
			if top[tt.metric] != tt.wantMem {
				t.Errorf("%s = %v, want %v", tt.metric, top[tt.metric], tt.wantMem)
			}
			if top["requestId"] != reqA {
				t.Errorf("requestId = %v, want %s", top["requestId"], reqA)
			}
			var doc emfDoc
			_ = json.Unmarshal([]byte(line), &doc)
			if *doc.AWS.Timestamp != at.UnixMilli() {
				t.Errorf("Timestamp = %d, want the report's %d", *doc.AWS.Timestamp, at.UnixMilli())
			}
		})
	}
}

func TestEMFOffWritesNothing(t *testing.T) {
	var out bytes.Buffer
	tr := tenant.New(tenant.Options{EMFOut: &out}) // EMF false
	mark := textLog(t0, reqA, markLine("acme"))
	tr.Observe(&mark, t0)
	rep := reportEv(t0.Add(time.Second), reqA, 78)
	if n := len(tr.Observe(&rep, rep.Time)); n != 1 {
		t.Fatalf("got %d records, want 1", n)
	}
	if out.Len() != 0 {
		t.Errorf("EMF off wrote %q", out.String())
	}
}

func TestEMFRequestIDNameClash(t *testing.T) {
	var out bytes.Buffer
	tr := tenant.New(tenant.Options{EMF: true, EMFOut: &out, EMFDimension: "requestId"})
	mark := textLog(t0, reqA, markLine("acme"))
	tr.Observe(&mark, t0)
	rep := reportEv(t0.Add(time.Second), reqA, 78)
	tr.Observe(&rep, rep.Time)
	line := strings.TrimSuffix(out.String(), "\n")
	if n := strings.Count(line, `"requestId":`); n != 1 {
		t.Fatalf("line has %d requestId members, want 1 (the dimension): %s", n, line)
	}
	top := checkEMF(t, line, "CustomerMemoryReport", "CustomerMemoryUsage", "requestId")
	if top["requestId"] != "acme" {
		t.Errorf("dimension requestId = %v, want the tenant", top["requestId"])
	}
}
