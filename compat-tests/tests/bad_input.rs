//! Malformed and hostile input over raw TCP. Each case uses its own connection; after
//! each one the broker must still be up, a fresh ApiVersions + Metadata round trip on
//! another connection must work, and a well-behaved rdkafka producer running for the
//! whole test must see every message acknowledged and readable.
//!
//! Every expectation below was checked against Apache Kafka 4.1.1 (the reference) and
//! again on 4.4.0, where all hold but one: 4.4.0 serves ApiVersions up to v5 (KIP-1242),
//! millrace 0..=4, so the ApiVersions v127 case fails against Kafka 4.4.0. The comments
//! say what Kafka does.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::canary::{expect_healthy, Canary};
use common::{admin_create, consume_all};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, ProduceRequest,
    ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use millrace_compat_tests::wire::{decode_response, encode_request, encode_request_body, frame};
use millrace_compat_tests::{now_ms, unique_topic, BrokerOpts, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a "closed" case may take to see EOF/reset.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a request may take to be answered.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

async fn connect(addr: &str) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Write `bytes`; a reset while writing already counts as the broker closing on us,
/// which the following read will report.
async fn write(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes).await;
}

/// The broker must close the connection: a read returns EOF or a reset within the
/// deadline, and no response bytes come first.
async fn expect_closed(s: &mut TcpStream, case: &str) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + CLOSE_DEADLINE;
    let res = tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await;
    match res {
        Err(_) => panic!("{case}: connection still open after {CLOSE_DEADLINE:?}"),
        Ok(Ok(0)) => {}
        Ok(Err(e)) if is_reset(&e) => {}
        Ok(Err(e)) => panic!("{case}: unexpected read error {e}"),
        Ok(Ok(n)) => panic!(
            "{case}: expected the connection to be closed, got {n} bytes: {:02x?}",
            &buf[..n.min(64)]
        ),
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// Read one response frame (size prefix stripped) within the deadline.
async fn read_frame(s: &mut TcpStream, case: &str) -> Vec<u8> {
    let fut = async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await?;
        let len = i32::from_be_bytes(len);
        assert!((0..=16 << 20).contains(&len), "{case}: response size {len}");
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await?;
        Ok::<_, std::io::Error>(payload)
    };
    tokio::time::timeout(ANSWER_DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("{case}: no response within {ANSWER_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{case}: reading the response failed: {e}"))
}

/// Deterministic junk (xorshift), so a failure reproduces byte for byte.
fn junk(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// One record batch (magic 2, uncompressed, no producer id) holding `n` records.
fn batch(n: usize) -> Vec<u8> {
    batch_with(n, true)
}

/// `n` records as one batch (`single`) or as `n` one-record batches back to back.
fn batch_with(n: usize, single: bool) -> Vec<u8> {
    let ts = now_ms();
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch whenever offset - sequence changes, and
            // Produce v3+ allows exactly one batch per partition (else INVALID_RECORD).
            // Only the first record's sequence reaches the wire (base sequence -1 = no
            // idempotence), so count up from -1 to keep the records in one batch.
            sequence: if single { i as i32 - 1 } else { -1 },
            timestamp: ts,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf.to_vec()
}

fn produce_request(topic: &str, records: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])])
}

/// (error_code, base_offset, error_message) of the single partition in a Produce
/// response.
fn produce_result(
    payload: &[u8],
    version: i16,
    corr: i32,
    case: &str,
) -> (i16, i64, Option<String>) {
    let (h, r) = decode_response::<ProduceResponse>(ApiKey::Produce, payload, version)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(h.correlation_id, corr, "{case}: correlation id");
    assert_eq!(r.responses.len(), 1, "{case}: topics in response");
    let parts = &r.responses[0].partition_responses;
    assert_eq!(parts.len(), 1, "{case}: partitions in response");
    (
        parts[0].error_code,
        parts[0].base_offset,
        parts[0]
            .error_message
            .as_ref()
            .map(|m| format!("{m} {:?}", parts[0].record_errors)),
    )
}

#[test]
fn malformed_requests_do_not_hurt_the_broker() {
    let mut broker = TestBroker::start(BrokerOpts::default());
    let addr = broker.bootstrap();
    let produce_topic = unique_topic("bad-produce");
    admin_create(&addr, &produce_topic, 1);
    // The well-behaved client: an idempotent rdkafka producer sending throughout.
    let canary = Canary::start(&addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    {
        let mut check = |case: &str| expect_healthy(&mut broker, &canary, case);

        // 1. A plausible size, then junk. The first two junk bytes (0xdead) are read as
        //    the API key: unknown -> Kafka closes the connection.
        rt.block_on(async {
            let mut s = connect(&addr).await;
            let mut body = vec![0xde, 0xad];
            body.extend(junk(62, 0x9e3779b97f4a7c15));
            write(&mut s, &frame(&body)).await;
            expect_closed(&mut s, "garbage bytes").await;
        });
        check("garbage bytes");

        // 2. Negative frame length -> closed (Kafka: InvalidReceiveException).
        rt.block_on(async {
            let mut s = connect(&addr).await;
            write(&mut s, &(-5i32).to_be_bytes()).await;
            write(&mut s, &junk(16, 7)).await;
            expect_closed(&mut s, "negative frame length").await;
        });
        check("negative frame length");

        // 3. Frame length 0x7fffffff, above socket.request.max.bytes (100 MiB) -> closed
        //    before any allocation of that size.
        rt.block_on(async {
            let mut s = connect(&addr).await;
            write(&mut s, &0x7fff_ffffi32.to_be_bytes()).await;
            write(&mut s, &junk(16, 11)).await;
            expect_closed(&mut s, "oversize frame length").await;
        });
        check("oversize frame length");

        // 4. A well-formed v1 header with API key 9999 -> closed (no response).
        rt.block_on(async {
            let mut s = connect(&addr).await;
            let mut body = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(9999)
                .with_request_api_version(0)
                .with_correlation_id(4)
                .with_client_id(Some(StrBytes::from_static_str("compat")))
                .encode(&mut body, 1)
                .unwrap();
            write(&mut s, &frame(&body)).await;
            expect_closed(&mut s, "unknown api key").await;
        });
        check("unknown api key");

        // 5. ApiVersions v127: Kafka answers (KIP-511) with a v0-format response,
        //    error_code 35 UNSUPPORTED_VERSION and a single api_keys entry: ApiVersions
        //    0..=4, so the client can retry with a version both sides know. The
        //    connection stays usable.
        rt.block_on(async {
            let mut s = connect(&addr).await;
            let mut body = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(ApiKey::ApiVersions as i16)
                .with_request_api_version(127)
                .with_correlation_id(5)
                .with_client_id(Some(StrBytes::from_static_str("compat")))
                .encode(&mut body, 2)
                .unwrap();
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("compat"))
                .with_client_software_version(StrBytes::from_static_str("1"))
                .encode(&mut body, 3)
                .unwrap();
            write(&mut s, &frame(&body)).await;
            let payload = read_frame(&mut s, "ApiVersions v127").await;
            let (h, r) = decode_response::<ApiVersionsResponse>(ApiKey::ApiVersions, &payload, 0)
                .unwrap_or_else(|e| panic!("ApiVersions v127 reply as v0: {e}"));
            assert_eq!(h.correlation_id, 5, "ApiVersions v127: correlation id");
            assert_eq!(r.error_code, 35, "ApiVersions v127: UNSUPPORTED_VERSION");
            let av = r
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                .expect("ApiVersions v127: ApiVersions listed in the ranges");
            assert_eq!(
                (av.min_version, av.max_version),
                (0, 4),
                "ApiVersions range"
            );
            // Kafka lists only ApiVersions' own range here (not every API): the client
            // needs nothing else to pick a version for its retry.
            assert_eq!(
                r.api_keys.len(),
                1,
                "ApiVersions v127: Kafka lists just ApiVersions, got {:?}",
                r.api_keys.iter().map(|k| k.api_key).collect::<Vec<_>>()
            );
            // The same connection then works at a supported version.
            let req = ApiVersionsRequest::default();
            write(&mut s, &encode_request(ApiKey::ApiVersions, &req, 0, 6)).await;
            let payload = read_frame(&mut s, "ApiVersions v0 after v127").await;
            let (h, r) =
                decode_response::<ApiVersionsResponse>(ApiKey::ApiVersions, &payload, 0).unwrap();
            assert_eq!(
                (h.correlation_id, r.error_code),
                (6, 0),
                "ApiVersions v0 retry"
            );
        });
        check("ApiVersions v127");

        // 6. Metadata v99 (unsupported, and not ApiVersions) -> closed, no response.
        rt.block_on(async {
            let mut s = connect(&addr).await;
            let mut body = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(ApiKey::Metadata as i16)
                .with_request_api_version(99)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("compat")))
                .encode(&mut body, 2)
                .unwrap();
            MetadataRequest::default().encode(&mut body, 12).unwrap();
            write(&mut s, &frame(&body)).await;
            expect_closed(&mut s, "Metadata v99").await;
        });
        check("Metadata v99");

        // 7. Truncated request: a valid Metadata v12 header and a body cut short (the
        //    size prefix matches the bytes sent, so the frame is complete but the body
        //    does not parse) -> closed.
        rt.block_on(async {
            let mut s = connect(&addr).await;
            let req =
                MetadataRequest::default()
                    .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                        TopicName(StrBytes::from_static_str("some-topic-name-long-enough")),
                    ))]));
            let full = encode_request_body(ApiKey::Metadata, &req, 12, 8);
            let cut = &full[..full.len() - 12];
            write(&mut s, &frame(cut)).await;
            expect_closed(&mut s, "truncated request").await;
        });
        check("truncated request");

        // 8. Produce v9 (acks=1) whose batch CRC is wrong -> a ProduceResponse with
        //    partition error 2 CORRUPT_MESSAGE; nothing is appended and the connection
        //    stays open: a correct batch on it then lands at offset 0.
        rt.block_on(async {
            let mut s = connect(&addr).await;
            let mut bad = batch(3);
            // Batch layout: baseOffset(8) length(4) leaderEpoch(4) magic(1) crc(4)...
            bad[17] ^= 0xff;
            write(
                &mut s,
                &encode_request(ApiKey::Produce, &produce_request(&produce_topic, bad), 9, 9),
            )
            .await;
            let payload = read_frame(&mut s, "corrupt CRC produce").await;
            let (err, _, msg) = produce_result(&payload, 9, 9, "corrupt CRC produce");
            assert_eq!(err, 2, "corrupt CRC produce: CORRUPT_MESSAGE ({msg:?})");

            write(
                &mut s,
                &encode_request(
                    ApiKey::Produce,
                    &produce_request(&produce_topic, batch(3)),
                    9,
                    10,
                ),
            )
            .await;
            let payload = read_frame(&mut s, "valid produce after corrupt").await;
            let (err, base, msg) = produce_result(&payload, 9, 10, "valid produce after corrupt");
            assert_eq!(
                (err, base),
                (0, 0),
                "valid produce after the corrupt one: (error, base offset), {msg:?}"
            );
        });
        check("corrupt CRC produce");

        // 9. Produce v9 carrying two batches for one partition -> partition error 87
        //    INVALID_RECORD (Kafka: v3+ allows exactly one batch per partition), nothing
        //    appended, connection stays open.
        rt.block_on(async {
            let mut s = connect(&addr).await;
            let two = batch_with(2, false);
            write(
                &mut s,
                &encode_request(
                    ApiKey::Produce,
                    &produce_request(&produce_topic, two),
                    9,
                    11,
                ),
            )
            .await;
            let payload = read_frame(&mut s, "two-batch produce").await;
            let (err, _, msg) = produce_result(&payload, 9, 11, "two-batch produce");
            assert_eq!(err, 87, "two-batch produce: INVALID_RECORD ({msg:?})");
            let req = ApiVersionsRequest::default();
            write(&mut s, &encode_request(ApiKey::ApiVersions, &req, 0, 12)).await;
            let payload = read_frame(&mut s, "ApiVersions after two-batch produce").await;
            let (h, _) =
                decode_response::<ApiVersionsResponse>(ApiKey::ApiVersions, &payload, 0).unwrap();
            assert_eq!(h.correlation_id, 12);
        });
        check("two-batch produce");
    }

    // Every canary message was acked and is readable; the produce topic holds exactly
    // the 3 valid records (the corrupt and two-batch requests left no trace).
    let canary_topic = canary.topic.clone();
    let canary_sent = canary.finish();
    let canary_msgs = consume_all(&addr, &canary_topic);
    let got: Vec<String> = canary_msgs[0]
        .iter()
        .map(|m| String::from_utf8(m.value.clone().unwrap()).unwrap())
        .collect();
    let want: Vec<String> = (0..canary_sent).map(|i| format!("canary-{i}")).collect();
    assert_eq!(got, want, "canary messages");
    let produced = consume_all(&addr, &produce_topic);
    let values: Vec<Option<Vec<u8>>> = produced[0].iter().map(|m| m.value.clone()).collect();
    assert_eq!(
        values,
        (0..3)
            .map(|i| Some(format!("value-{i}").into_bytes()))
            .collect::<Vec<_>>(),
        "produce topic contents"
    );
}
