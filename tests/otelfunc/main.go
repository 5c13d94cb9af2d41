// Command otelfunc plays a Lambda function instrumented with the
// OpenTelemetry Go SDK, for the end-to-end tests of the extension's OTLP
// receiver: one run is one invocation's handler.
//
// It exports over OTLP/HTTP protobuf where the standard variables say
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES),
// parents its spans on the X-Ray header in _X_AMZN_TRACE_ID (the AWS X-Ray
// propagator), makes a root span and -spans-1 children, a counter, a
// histogram and a log record, then force-flushes and shuts down every
// provider before it returns, as an instrumented handler does at its end.
// It prints one JSON line (see result) naming what it made, so that a test
// can check each item arrived once.
//
// It is its own module: the OpenTelemetry exporters link
// go.opentelemetry.io/proto/otlp, which registers the same protobuf files as
// the go.opentelemetry.io/proto/slim/otlp the extension uses, and one binary
// holding both panics at init.
//
// Usage:
//
//	otelfunc -request ID -marker M [-spans N] [-attr-bytes K] [-no-flush]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/propagators/aws/xray"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Names the tests look for.
const (
	scope       = "o2-extension/tests/otelfunc"
	counterName = "otelfunc.invocations"
	histName    = "otelfunc.work.duration"
)

// result is the line printed on success.
type result struct {
	// TraceID is the trace of every span (hex); ParentID the span id the
	// root was parented on (the X-Ray header's Parent), empty without one.
	TraceID, ParentID string
	// RootID is the root span's id; Children the others', in order.
	RootID   string
	Children []string
	// Points counts the data points each successful metric export carried,
	// by metric name: what must arrive.
	Points map[string]int
}

// countingExporter counts the data points the metric exports that
// succeeded carried.
type countingExporter struct {
	sdkmetric.Exporter
	points map[string]int
}

func (c *countingExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	if err := c.Exporter.Export(ctx, rm); err != nil {
		return err
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				c.points[m.Name] += len(d.DataPoints)
			case metricdata.Histogram[float64]:
				c.points[m.Name] += len(d.DataPoints)
			}
		}
	}
	return nil
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "otelfunc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("otelfunc", flag.ContinueOnError)
	request := fs.String("request", "", "the invocation's request id")
	marker := fs.String("marker", "", "a value put on every span, point and record")
	spans := fs.Int("spans", 3, "spans to make: a root and spans-1 children")
	attrBytes := fs.Int("attr-bytes", 0, "size of a payload attribute on each child span")
	noFlush := fs.Bool("no-flush", false, "return without flushing or shutting down the providers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *spans < 1 {
		return errors.New("-spans must be at least 1")
	}

	res, err := resource.New(ctx,
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK(),
		resource.WithAttributes(
			attribute.String("cloud.provider", "aws"),
			attribute.String("faas.name", getenv("AWS_LAMBDA_FUNCTION_NAME")),
			attribute.String("otelfunc.marker", *marker),
		),
	)
	if err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	// The exporters read OTEL_EXPORTER_OTLP_ENDPOINT and the other standard
	// variables themselves; protobuf is their only encoding.
	te, err := otlptracehttp.New(ctx)
	if err != nil {
		return fmt.Errorf("trace exporter: %w", err)
	}
	// Delta temporality, as Lambda functions are told to use (each
	// invocation exports what it measured, and the shutdown after a flush
	// has nothing left to send).
	me, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithTemporalitySelector(
		func(sdkmetric.InstrumentKind) metricdata.Temporality { return metricdata.DeltaTemporality }))
	if err != nil {
		return fmt.Errorf("metric exporter: %w", err)
	}
	counted := &countingExporter{Exporter: me, points: map[string]int{}}
	le, err := otlploghttp.New(ctx)
	if err != nil {
		return fmt.Errorf("log exporter: %w", err)
	}
	// AlwaysSample: the emulator's X-Ray header says Sampled=0, which the
	// default parent-based sampler would follow and export nothing.
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(te),
		sdktrace.WithSampler(sdktrace.AlwaysSample()))
	reader := sdkmetric.NewPeriodicReader(counted)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(reader))
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(le)))

	// The invocation's context from the X-Ray header, as the AWS Lambda
	// instrumentations take it.
	hdr := getenv("_X_AMZN_TRACE_ID")
	ctx = xray.Propagator{}.Extract(ctx, propagation.MapCarrier{"X-Amzn-Trace-Id": hdr})
	out := result{}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		out.ParentID = sc.SpanID().String()
	}

	common := []attribute.KeyValue{
		attribute.String("faas.invocation_id", *request),
		attribute.String("otelfunc.marker", *marker),
	}
	tracer := tp.Tracer(scope)
	ctx, root := tracer.Start(ctx, "handler", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(append(common, attribute.Int("otelfunc.children", *spans-1))...))
	out.TraceID, out.RootID = root.SpanContext().TraceID().String(), root.SpanContext().SpanID().String()
	payload := strings.Repeat("x", *attrBytes)
	for i := range *spans - 1 {
		_, child := tracer.Start(ctx, fmt.Sprintf("work %d", i),
			trace.WithAttributes(append(common, attribute.Int("otelfunc.index", i))...))
		if payload != "" {
			child.SetAttributes(attribute.String("otelfunc.payload", payload))
		}
		child.End()
		out.Children = append(out.Children, child.SpanContext().SpanID().String())
	}

	meter := mp.Meter(scope)
	counter, err := meter.Int64Counter(counterName)
	if err != nil {
		return err
	}
	hist, err := meter.Float64Histogram(histName, metric.WithUnit("ms"))
	if err != nil {
		return err
	}
	counter.Add(ctx, 1, metric.WithAttributes(common...))
	hist.Record(ctx, 12.5, metric.WithAttributes(common...))

	var rec otellog.Record
	rec.SetTimestamp(time.Now())
	rec.SetSeverity(otellog.SeverityInfo)
	rec.SetSeverityText("INFO")
	rec.SetBody(attribute.StringValue("handled " + *marker))
	rec.AddAttributes(attribute.String("faas.invocation_id", *request), attribute.String("otelfunc.marker", *marker))
	lp.Logger(scope).Emit(ctx, rec) // ctx carries the root span: the record has its ids
	root.End()

	if !*noFlush {
		// The end of an instrumented handler: flush, then shut down, within
		// the invocation.
		var errs []error
		errs = append(errs, tp.ForceFlush(ctx), mp.ForceFlush(ctx), lp.ForceFlush(ctx))
		errs = append(errs, tp.Shutdown(ctx), mp.Shutdown(ctx), lp.Shutdown(ctx))
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	out.Points = counted.points
	return json.NewEncoder(os.Stdout).Encode(out)
}
