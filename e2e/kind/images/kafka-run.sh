#!/bin/sh
# One KRaft node (broker + controller) advertising KAFKA_ADVERTISED_HOST; log dirs under /var/lib/kafka (a volume).
set -eu
set -f   # the class path's * is Java's, not the shell's
: "${KAFKA_ADVERTISED_HOST:?}"
D=/var/lib/kafka; CP='/opt/kafka/libs/*'
cat > /tmp/server.properties <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=PLAINTEXT://${KAFKA_ADVERTISED_HOST}:9092
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$D/data
auto.create.topics.enable=true
num.partitions=${KAFKA_PARTITIONS:-10}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
JAVA="java -Xms256m -Xmx${KAFKA_HEAP:-512m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dslf4j.provider=org.slf4j.simple.SimpleServiceProvider -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp $CP"
if [ ! -f "$D/data/meta.properties" ]; then
  $JAVA kafka.tools.StorageTool format -t "$($JAVA kafka.tools.StorageTool random-uuid | tail -1)" \
    -c /tmp/server.properties --ignore-formatted
fi
exec $JAVA kafka.Kafka /tmp/server.properties
