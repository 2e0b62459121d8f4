//! Parser throughput on a realistic 100 MB stream of score events in 64 KiB chunks, beside
//! eventsource-stream 0.2.3 on the same input. Run with `cargo bench -p scores-sse --bench parser`.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use scores_sse::{Event, Item, ItemRef, Parser, encode};

const STREAM_BYTES: usize = 100_000_000;
const CHUNK_BYTES: usize = 64 * 1024;

/// Feed-shaped events (`event: score`, compact JSON, full-precision scores) with ids, as the
/// re-broadcast sends them.
fn stream() -> (Vec<Bytes>, usize) {
    let mut text = String::with_capacity(STREAM_BYTES + 256);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut n_events = 0;
    while text.len() < STREAM_BYTES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let score = (state >> 11) as f64 / (1u64 << 53) as f64;
        let data = format!(
            r#"{{"studentId":"Student.Name{}","exam":{},"score":{score}}}"#,
            state % 10_000,
            10_000 + n_events / 1000
        );
        let event = Event::new("score", data).with_id(&n_events.to_string());
        encode(&event, &mut text).expect("encodable");
        n_events += 1;
    }
    let chunks = text.as_bytes().chunks(CHUNK_BYTES).map(Bytes::copy_from_slice).collect();
    (chunks, n_events)
}

fn parse(c: &mut Criterion) {
    let (chunks, n_events) = stream();
    let n_bytes: usize = chunks.iter().map(Bytes::len).sum();
    let mut group = c.benchmark_group("parse 100 MB in 64 KiB chunks");
    group.sample_size(10);
    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(n_bytes as u64)),
        ("events", Throughput::Elements(n_events as u64)),
    ] {
        group.throughput(throughput);
        group.bench_function(format!("scores-sse Parser::feed, owned ({unit})"), |b| {
            b.iter(|| {
                let mut parser = Parser::default();
                let mut n_parsed = 0usize;
                for chunk in &chunks {
                    for item in parser.feed(chunk) {
                        if let Ok(Item::Event(event)) = item {
                            n_parsed += black_box(event.data.len()).min(1);
                        }
                    }
                }
                assert_eq!(n_parsed, n_events);
            })
        });
        group.bench_function(format!("scores-sse Parser::feed_with, borrowed ({unit})"), |b| {
            b.iter(|| {
                let mut parser = Parser::default();
                let mut n_parsed = 0usize;
                for chunk in &chunks {
                    parser.feed_with(chunk, |item| {
                        if let Ok(ItemRef::Event(event)) = item {
                            n_parsed += black_box(event.data.len()).min(1);
                        }
                    });
                }
                assert_eq!(n_parsed, n_events);
            })
        });
        group.bench_function(format!("eventsource-stream 0.2.3 ({unit})"), |b| {
            b.iter(|| {
                let body =
                    futures_util::stream::iter(chunks.iter().cloned().map(Ok::<_, Infallible>));
                let n_parsed = futures_executor::block_on(
                    body.eventsource().filter(|event| std::future::ready(event.is_ok())).count(),
                );
                assert_eq!(n_parsed, n_events);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
