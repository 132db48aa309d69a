#!/usr/bin/env bash
# An OpenTelemetry Collector (otlp receiver -> batch -> debug exporter) built with the collector builder,
# so tests can check that traces really leave the processes over OTLP.
. "$(dirname "$0")/lib.sh"
OTEL_VERSION="0.165.0"
CONFMAP_VERSION="1.71.0"
W="$CACHE_ROOT/otelcol-$OTEL_VERSION"
if stamp_ok "$W"; then echo "$W/bin/otelcol"; exit 0; fi
mkdir -p "$W/bin"
log "building the OpenTelemetry Collector $OTEL_VERSION (3-6 min)"
GOBIN="$W/bin" go install "go.opentelemetry.io/collector/cmd/builder@v$OTEL_VERSION"
cat > "$W/builder.yaml" <<YAML
dist:
  name: otelcol
  description: pat-booking-be test collector
  output_path: $W/build
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v$OTEL_VERSION
processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor v$OTEL_VERSION
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter v$OTEL_VERSION
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v$CONFMAP_VERSION
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider v$CONFMAP_VERSION
  - gomod: go.opentelemetry.io/collector/confmap/provider/yamlprovider v$CONFMAP_VERSION
YAML
"$W/bin/builder" --config "$W/builder.yaml"
cp "$W/build/otelcol" "$W/bin/otelcol"
rm -rf "$W/build"
stamp_write "$W"
echo "$W/bin/otelcol"
