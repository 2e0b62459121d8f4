//! The parser's and encoder's laws, checked on generated streams and events.

use proptest::prelude::*;
use scores_sse::{Event, Item, Limits, ParseError, Parser, encode};

/// One line of a stream, with its line ending: fields, comments, blank lines, junk, invalid
/// UTF-8 and lines long enough to cross the small limits used below.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        Just(b"".to_vec()),
        "[a-z0-9 ]{0,12}".prop_map(|v| format!("data: {v}").into_bytes()),
        "[a-z0-9 ]{0,12}".prop_map(|v| format!("data:{v}").into_bytes()),
        Just(b"data".to_vec()),
        "[a-z]{0,6}".prop_map(|v| format!("event: {v}").into_bytes()),
        "[a-z0-9]{0,4}".prop_map(|v| format!("id: {v}").into_bytes()),
        Just(b"id: a\0b".to_vec()),
        "[0-9]{1,5}".prop_map(|v| format!("retry: {v}").into_bytes()),
        Just(b"retry: 1x".to_vec()),
        "[a-z ]{0,8}".prop_map(|v| format!(":{v}").into_bytes()),
        "[a-z:]{1,8}".prop_map(String::into_bytes),
        prop::collection::vec(
            any::<u8>().prop_filter("no line breaks", |b| *b != b'\r' && *b != b'\n'),
            0..8
        )
        .prop_map(|bytes| [b"data: ".as_slice(), &bytes].concat()),
        Just([b"data: ".as_slice(), &[b'x'; 70]].concat()),
        Just([b"data: ".as_slice(), &[0xFF; 40]].concat()),
    ];
    let ending = prop_oneof![Just(b"\n".to_vec()), Just(b"\r".to_vec()), Just(b"\r\n".to_vec())];
    (body, ending).prop_map(|(body, ending)| [body, ending].concat())
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(line(), 0..40), "[a-z: ]{0,5}").prop_map(
        |(bom, lines, unterminated)| {
            let bom: &[u8] = if bom { b"\xEF\xBB\xBF" } else { b"" };
            [bom, &lines.concat(), unterminated.as_bytes()].concat()
        },
    )
}

const LIMITS: Limits = Limits { max_line_len: 64, max_event_len: 96, max_id_len: 48 };

fn parse(chunks: &[&[u8]]) -> (Vec<Result<Item, ParseError>>, String) {
    let mut parser = Parser::new(LIMITS).with_comments();
    let mut items = Vec::new();
    for chunk in chunks {
        items.extend(parser.feed(chunk));
    }
    parser.finish();
    (items, parser.last_event_id().to_owned())
}

fn split_at_points(bytes: &[u8], mut points: Vec<usize>) -> Vec<&[u8]> {
    points.iter_mut().for_each(|p| *p %= bytes.len() + 1);
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    chunks
}

fn normalize_line_breaks(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

proptest! {
    #[test]
    fn any_chunking_parses_to_the_same_items(
        stream in stream(),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = parse(&[&stream]);
        let chunked = parse(&split_at_points(&stream, points));
        prop_assert_eq!(&whole, &chunked);
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(&whole, &parse(&bytewise));
    }

    #[test]
    fn encode_then_parse_is_the_identity(
        event_type in "[^\r\n]{0,12}",
        id in "[^\r\n\0]{0,12}",
        data in any::<String>(),
    ) {
        let event = Event::new(&event_type, data.clone()).with_id(&id);
        let mut text = String::new();
        encode(&event, &mut text).expect("type and id have no line breaks, id has no NUL");
        let mut parser = Parser::new(Limits::default());
        let items: Vec<_> = parser.feed(text.as_bytes()).collect();
        let expected_type = if event_type.is_empty() { "message" } else { event_type.as_str() };
        let expected = Event::new(expected_type, normalize_line_breaks(&data)).with_id(&id);
        prop_assert_eq!(items, vec![Ok(Item::Event(expected))]);
    }

    #[test]
    fn parser_never_panics_and_stays_bounded(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut parser = Parser::new(LIMITS).with_comments();
        for chunk in bytes.chunks(7) {
            for item in parser.feed(chunk) {
                if let Ok(Item::Event(event)) = item {
                    prop_assert!(event.data.len() <= LIMITS.max_event_len);
                    prop_assert!(event.id.len() <= LIMITS.max_id_len);
                }
            }
        }
    }
}
