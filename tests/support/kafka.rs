//! Kafka for the messaging tests: librdkafka's built-in mock cluster
//! ([`rdkafka::mocking::MockCluster`]), started in the test's own process and destroyed when
//! dropped.
//!
//! No Kafka broker can be installed here from Debian's packages, PyPI or npm (Kafka ships as
//! JVM tarballs, which this machine cannot fetch), so the tests use the mock: brokers inside
//! librdkafka that speak the Kafka protocol on real loopback ports, with topics, partitions,
//! offsets, consumer groups and injectable broker errors. The clients under test are the real
//! rdkafka producer and consumer, over TCP, exactly as against a real cluster; what the mock
//! does not show is a real broker's storage, replication and timing.
//!
//! Each test makes its own cluster on fresh ports, so parallel tests share nothing. Ready as
//! soon as `MockCluster::new` returns (its listeners are bound then); records sent before a
//! consumer joins are read from the start (`auto.offset.reset=earliest`).

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer};
use rdkafka::ClientConfig;

/// A mock Kafka cluster of one broker; destroyed when dropped.
pub struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Kafka {
    /// Starts a cluster with `topics`, one partition each.
    pub fn start(topics: &[&str]) -> Self {
        let cluster = MockCluster::new(1).expect("librdkafka's mock cluster");
        for topic in topics {
            cluster.create_topic(topic, 1, 1).expect("topic");
        }
        Kafka { cluster }
    }

    /// The cluster, to inject broker errors.
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// A producer that gives up on a record after 10 s.
    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("message.timeout.ms", "10000")
            .create()
            .expect("producer")
    }

    /// A consumer of `group` subscribed to `topics`, reading from the start, that stores
    /// offsets only when told to (`KafkaTracing::with_settlement(true)`).
    pub fn consumer(&self, group: &str, topics: &[&str]) -> StreamConsumer {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(topics).expect("subscribe");
        consumer
    }
}
