#!/usr/bin/env bash
# Apache Kafka (KRaft, one node) from Maven Central jars, run with the installed JDK.
. "$(dirname "$0")/lib.sh"
K="$CACHE_ROOT/kafka-$KAFKA_VERSION"
if stamp_ok "$K"; then echo "$K"; exit 0; fi
mkdir -p "$K/libs"
log "fetching Kafka $KAFKA_VERSION jars from Maven Central"
cat > "$K/kafka-rt.xml" <<POM
<project><modelVersion>4.0.0</modelVersion><groupId>local</groupId><artifactId>kafka-rt</artifactId>
 <version>1</version><packaging>pom</packaging><dependencies>
 <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
 <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
 <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>$SLF4J_VERSION</version></dependency>
 </dependencies><build><plugins><plugin><groupId>org.apache.maven.plugins</groupId>
 <artifactId>maven-dependency-plugin</artifactId><version>3.8.1</version></plugin></plugins></build></project>
POM
mvn -B -q -f "$K/kafka-rt.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$K/libs"
stamp_write "$K"
echo "$K"
