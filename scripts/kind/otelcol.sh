#!/usr/bin/env bash
# The OpenTelemetry Collector for the platform's collector Deployment on kind: the operator's config uses the
# otlp receiver, memory_limiter and batch processors and the debug/otlp/otlphttp exporters, so this build has them
# (scripts/infra/otelcol.sh's test collector has no memory_limiter). Prints the binary's path.
. "$(dirname "$0")/lib.sh"
OTEL_VERSION="0.165.0"
CONFMAP_VERSION="1.71.0"
W="$KIND_CACHE/out/otelcol-$OTEL_VERSION"
if stamp_ok "$W"; then echo "$W/otelcol"; exit 0; fi
mkdir -p "$W"
log "building the OpenTelemetry Collector $OTEL_VERSION for kind (3-6 min)"
GOBIN="$W" go install "go.opentelemetry.io/collector/cmd/builder@v$OTEL_VERSION"
C=go.opentelemetry.io/collector
cat > "$W/builder.yaml" <<YAML
dist: {name: otelcol, description: pat-booking-be platform collector, output_path: $W/build}
receivers: [{gomod: $C/receiver/otlpreceiver v$OTEL_VERSION}]
processors:
  - gomod: $C/processor/batchprocessor v$OTEL_VERSION
  - gomod: $C/processor/memorylimiterprocessor v$OTEL_VERSION
exporters:
  - gomod: $C/exporter/debugexporter v$OTEL_VERSION
  - gomod: $C/exporter/otlpexporter v$OTEL_VERSION
  - gomod: $C/exporter/otlphttpexporter v$OTEL_VERSION
providers:
  - gomod: $C/confmap/provider/fileprovider v$CONFMAP_VERSION
  - gomod: $C/confmap/provider/envprovider v$CONFMAP_VERSION
  - gomod: $C/confmap/provider/yamlprovider v$CONFMAP_VERSION
YAML
timed otelcol nice -n 10 "$W/builder" --config "$W/builder.yaml" >/dev/null
mv "$W/build/otelcol" "$W/otelcol" && rm -rf "$W/build" "$W/builder"
stamp_write "$W"
echo "$W/otelcol"
