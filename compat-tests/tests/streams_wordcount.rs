//! A Kafka Streams application (`streams/WordCount.java`, Kafka Streams `KAFKA_VERSION`,
//! at-least-once) against the broker: a word count with a repartition (groupBy word) and
//! a persistent count store. The counts must be exact, before and after a clean app stop,
//! a broker restart and an app restart that rebuilds its store from the changelog.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{admin_create, consume_all, consumer, flush_all_ok, producer, send, watermarks};
use kafka_protocol::messages::ApiKey;
use millrace_compat_tests::{
    java_program_command, unique_topic, wait_until, wire, BrokerOpts, ClientProcess, TestBroker,
};
use rdkafka::consumer::Consumer;
use rdkafka::producer::BaseRecord;

const WORDS: [&str; 12] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima",
];

/// `lines` lines of text for round `round`: 1 to 5 words each, some capitalised (the app
/// lower-cases), separated by spaces or ", ".
fn text(round: usize, lines: usize) -> Vec<String> {
    (0..lines)
        .map(|i| {
            (0..=(i + round) % 5)
                .map(|j| {
                    let w = WORDS[(i * 7 + j * 5 + round * 3) % WORDS.len()];
                    if (i + j) % 4 == 0 {
                        let mut c = w.chars();
                        let first = c.next().map(|f| f.to_ascii_uppercase());
                        first.into_iter().chain(c).collect()
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(if i % 3 == 0 { ", " } else { " " })
        })
        .collect()
}

fn count_words(lines: &[String], into: &mut BTreeMap<String, u64>) {
    for line in lines {
        for w in line
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *into.entry(w.to_ascii_lowercase()).or_default() += 1;
        }
    }
}

fn produce_lines(bootstrap: &str, topic: &str, lines: &[String]) {
    let (p, rec) = producer(bootstrap, &[]);
    for (i, line) in lines.iter().enumerate() {
        let key = format!("line-{i}");
        send(
            &p,
            BaseRecord::with_opaque_to(topic, i)
                .key(key.as_bytes())
                .payload(line.as_bytes()),
        );
    }
    flush_all_ok(&p, &rec, lines.len());
}

/// The latest count per word in the output topic (read from the start to the end).
fn output_counts(bootstrap: &str, topic: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for msg in consume_all(bootstrap, topic).into_iter().flatten() {
        let word = String::from_utf8(msg.key.expect("output key")).expect("utf-8 word");
        let count = String::from_utf8(msg.value.expect("output value"))
            .expect("utf-8 count")
            .parse::<u64>()
            .expect("decimal count");
        // A word's counts are on one partition, in order: the last one is current.
        counts.insert(word, count);
    }
    counts
}

struct App {
    process: ClientProcess,
    _state_dir: tempfile::TempDir,
}

/// Start the app with an empty state dir (so a restart rebuilds its store from the
/// changelog topic) and wait until it is RUNNING.
fn start_app(broker: &TestBroker, app_id: &str, input: &str, output: &str) -> App {
    let state_dir = tempfile::TempDir::new().expect("state dir");
    let mut cmd = java_program_command("streams", "WordCount", "384m");
    cmd.args(["--bootstrap", &broker.bootstrap()])
        .args(["--application-id", app_id])
        .args(["--input", input])
        .args(["--output", output])
        .arg("--state-dir")
        .arg(state_dir.path());
    let mut process = ClientProcess::spawn("wordcount", cmd, None);
    wait_until(
        "the Streams app to reach RUNNING",
        Duration::from_secs(120),
        || {
            let lines = process.stdout_lines();
            if lines.iter().any(|l| l == "@@ state RUNNING") {
                return Ok(());
            }
            if !process.is_running() {
                panic!(
                    "the Streams app exited: {lines:?}\n{}\n{}",
                    process.stderr_tail(60),
                    broker.log_tail()
                );
            }
            Err(format!("{lines:?}"))
        },
    );
    App {
        process,
        _state_dir: state_dir,
    }
}

/// Wait until the output topic holds exactly `want`.
fn wait_counts(broker: &TestBroker, app: &mut App, output: &str, want: &BTreeMap<String, u64>) {
    wait_until("the output counts", Duration::from_secs(120), || {
        assert!(
            app.process.is_running(),
            "the Streams app exited: {:?}\n{}",
            app.process.stdout_lines(),
            app.process.stderr_tail(60)
        );
        let got = output_counts(&broker.bootstrap(), output);
        if &got == want {
            Ok(())
        } else {
            Err(format!("got {got:?}, want {want:?}"))
        }
    });
}

/// Close stdin (the app's clean-shutdown signal): it must leave the group and exit 0.
fn stop_app(mut app: App) {
    let ok = app.process.stop(Duration::from_secs(90));
    assert!(
        ok,
        "the Streams app did not close cleanly: {:?}\n{}",
        app.process.stdout_lines(),
        app.process.stderr_tail(60)
    );
}

#[test]
fn streams_word_count_is_exact_across_restarts() {
    let mut broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let app_id = unique_topic("wordcount");
    let input = format!("{app_id}-input");
    let output = format!("{app_id}-output");
    admin_create(&b, &input, 2);
    admin_create(&b, &output, 2);

    let first = text(0, 120);
    let mut want = BTreeMap::new();
    count_words(&first, &mut want);
    let first_words: u64 = want.values().sum();
    produce_lines(&b, &input, &first);

    let mut app = start_app(&broker, &app_id, &input, &output);
    wait_counts(&broker, &mut app, &output, &want);

    // The app created its internal topics (names fixed by the topology: the grouping's
    // and the store's names) and wrote through them.
    let repartition = format!("{app_id}-by-word-repartition");
    let changelog = format!("{app_id}-counts-changelog");
    let md = consumer(&b)
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("all-topics metadata");
    let app_topics: BTreeSet<&str> = md
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| n.starts_with(&app_id))
        .collect();
    let expected_topics: BTreeSet<&str> = [&input, &output, &repartition, &changelog]
        .into_iter()
        .map(String::as_str)
        .collect();
    assert_eq!(app_topics, expected_topics, "the app's topics");
    let c = consumer(&b);
    let ends = |topic: &str| -> i64 { watermarks(&c, topic).iter().map(|(_, high)| high).sum() };
    // Every word went through the repartition topic exactly once.
    assert_eq!(
        ends(&repartition),
        first_words as i64,
        "repartition topic records"
    );
    // At least one count per word was logged to the changelog.
    assert!(
        ends(&changelog) >= want.len() as i64,
        "changelog holds {} records for {} words",
        ends(&changelog),
        want.len()
    );

    // Streams deletes the repartition records it has committed (DeleteRecords, every
    // repartition.purge.interval.ms): where the broker serves it, the topic empties.
    let serves_delete_records = wire::api_versions_probe(&b, Duration::from_secs(5))
        .expect("ApiVersions")
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::DeleteRecords as i16);
    if serves_delete_records {
        wait_until(
            "the repartition topic to be purged",
            Duration::from_secs(60),
            || {
                let marks = watermarks(&c, &repartition);
                if marks.iter().all(|(low, high)| low == high) {
                    Ok(())
                } else {
                    Err(format!("(low, high) per partition: {marks:?}"))
                }
            },
        );
    }

    stop_app(app);
    // After a clean close nothing more is written: the counts are still exact.
    assert_eq!(
        output_counts(&b, &output),
        want,
        "counts after the app closed"
    );

    broker.restart();
    let second = text(1, 80);
    count_words(&second, &mut want);
    produce_lines(&b, &input, &second);

    // A fresh state dir: the counts so far can only come back from the changelog.
    let mut app = start_app(&broker, &app_id, &input, &output);
    wait_counts(&broker, &mut app, &output, &want);
    stop_app(app);
    assert_eq!(
        output_counts(&b, &output),
        want,
        "counts after the broker restart and the app's restore"
    );
}
