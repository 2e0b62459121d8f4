//! The scoreboard's laws, checked on generated logs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use scores_core::{ExamId, Page, Score, ScoreEvent, Scoreboard, Snapshot, StudentId, decode};

type Contents = (Vec<(String, Vec<(u64, f64)>, f64)>, Vec<(u64, Vec<(String, f64)>, f64)>);

/// Everything a reader can see in a snapshot, except the sequence number.
fn contents(snapshot: &Snapshot) -> Contents {
    let students = snapshot
        .students(Page::ALL)
        .map(|id| {
            let report = snapshot.student(id).expect("listed students exist");
            let results = report.results().map(|(e, s)| (e.0, s.get())).collect();
            (id.to_string(), results, report.average)
        })
        .collect();
    let exams = snapshot
        .exams(Page::ALL)
        .map(|&exam| {
            let report = snapshot.exam(exam).expect("listed exams exist");
            let results = report.results().map(|(id, s)| (id.to_string(), s.get())).collect();
            (exam.0, results, report.average)
        })
        .collect();
    (students, exams)
}

fn score() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64, (0.0..1e-6f64)]
}

/// Events over a small key space, so that regrades and re-deliveries are frequent. Most exams
/// are 5-digit, as the feed's; now and then one is on either side of 32 bits, where a student's
/// results change layout.
fn event() -> impl Strategy<Value = ScoreEvent> {
    let exam = prop_oneof![
        12 => 10_000..10_006u64,
        1 => Just(u64::from(u32::MAX)),
        1 => Just(u64::from(u32::MAX) + 1),
    ];
    (0..6u8, exam, score()).prop_map(|(student, exam, score)| ScoreEvent {
        student_id: StudentId::new(&format!("student{student}")).expect("valid"),
        exam: ExamId(exam),
        score: Score::new(score).expect("in range"),
    })
}

fn within_relative(actual: f64, expected: f64, tolerance: f64) -> bool {
    actual == expected || (actual - expected).abs() <= tolerance * actual.abs().max(expected.abs())
}

fn naive_mean(scores: &[f64]) -> f64 {
    scores.iter().sum::<f64>() / scores.len() as f64
}

proptest! {
    #[test]
    fn incremental_averages_equal_recomputation(log in prop::collection::vec(event(), 1..400), every in 1..50usize) {
        let mut board = Scoreboard::new();
        let mut model: BTreeMap<(String, u64), f64> = BTreeMap::new();
        for (i, event) in log.iter().enumerate() {
            board.apply(event);
            model.insert((event.student_id.to_string(), event.exam.0), event.score.get());
            if i % every == 0 {
                // Publishing part-way exercises the merge of buffered changes into shared maps.
                prop_assert_eq!(board.snapshot().seq(), i as u64 + 1);
            }
        }
        let snapshot = board.snapshot();
        prop_assert_eq!(snapshot.seq(), log.len() as u64);
        prop_assert_eq!(snapshot.n_results(), model.len() as u64);

        let mut by_student: BTreeMap<&str, Vec<(u64, f64)>> = BTreeMap::new();
        let mut by_exam: BTreeMap<u64, Vec<(String, f64)>> = BTreeMap::new();
        for ((student, exam), score) in &model {
            by_student.entry(student).or_default().push((*exam, *score));
            by_exam.entry(*exam).or_default().push((student.clone(), *score));
        }
        let (students, exams) = contents(&snapshot);
        prop_assert_eq!(students.len(), by_student.len());
        for ((id, results, average), (expected_id, expected_results)) in students.iter().zip(&by_student) {
            prop_assert_eq!(id, expected_id);
            prop_assert_eq!(results, expected_results);
            let scores: Vec<f64> = expected_results.iter().map(|r| r.1).collect();
            prop_assert!(within_relative(*average, naive_mean(&scores), 1e-12), "{} vs {}", average, naive_mean(&scores));
        }
        prop_assert_eq!(exams.len(), by_exam.len());
        for ((exam, results, average), (expected_exam, expected_results)) in exams.iter().zip(&by_exam) {
            prop_assert_eq!(exam, expected_exam);
            prop_assert_eq!(results, expected_results);
            let scores: Vec<f64> = expected_results.iter().map(|r| r.1).collect();
            prop_assert!(within_relative(*average, naive_mean(&scores), 1e-12), "{} vs {}", average, naive_mean(&scores));
        }
    }

    #[test]
    fn folding_distinct_keys_in_any_order_gives_the_same_board(
        (log, shuffled) in prop::collection::btree_map((0..30u8, 0..30u64), 0.0..=1.0f64, 0..300)
            .prop_map(|results| results.into_iter().map(|((student, exam), score)| ScoreEvent {
                student_id: StudentId::new(&format!("s{student}")).expect("valid"),
                exam: ExamId(exam),
                score: Score::new(score).expect("in range"),
            }).collect::<Vec<_>>())
            .prop_flat_map(|log| (Just(log.clone()), Just(log).prop_shuffle()))
    ) {
        let in_order: Scoreboard = log.into_iter().collect();
        let reordered: Scoreboard = shuffled.into_iter().collect();
        prop_assert_eq!(contents(&in_order.clone().snapshot()), contents(&reordered.clone().snapshot()));
    }

    #[test]
    fn applying_a_log_twice_equals_applying_it_once(log in prop::collection::vec(event(), 0..300)) {
        let mut once = Scoreboard::new();
        once.extend(&log);
        let mut twice = once.clone();
        let first_pass = twice.snapshot();
        twice.extend(&log);
        prop_assert_eq!(contents(&once.snapshot()), contents(&twice.snapshot()));
        prop_assert_eq!(contents(&first_pass), contents(&once.snapshot()));
    }

    #[test]
    fn a_board_restored_from_a_checkpoint_answers_and_folds_like_the_original(
        log in prop::collection::vec(event(), 0..200),
        more in prop::collection::vec(event(), 0..50),
    ) {
        let mut original: Scoreboard = log.into_iter().collect();
        let snapshot = original.snapshot();
        let bytes = snapshot.encode_checkpoint();
        let decoded = Snapshot::decode_checkpoint(&bytes).expect("a checkpoint decodes");
        prop_assert_eq!(decoded.seq(), snapshot.seq());
        prop_assert_eq!(decoded.n_results(), snapshot.n_results());
        prop_assert_eq!(contents(&decoded), contents(&snapshot));
        // Both ways back to a board: from the decoded snapshot, and from the bytes directly.
        let mut restored = Scoreboard::from(decoded);
        let mut decoded_board = Scoreboard::decode_checkpoint(&bytes).expect("a checkpoint decodes");
        original.extend(&more);
        restored.extend(&more);
        decoded_board.extend(&more);
        let original = original.snapshot();
        for restored in [restored.snapshot(), decoded_board.snapshot()] {
            prop_assert_eq!(restored.seq(), original.seq());
            prop_assert_eq!(contents(&restored), contents(&original));
            prop_assert_eq!(restored.encode_checkpoint(), original.encode_checkpoint());
        }
    }

    #[test]
    fn a_split_board_publishes_at_any_batch_boundaries_what_one_event_at_a_time_shows(
        log in prop::collection::vec(event(), 0..300),
        cuts in prop::collection::vec(0..300usize, 0..12),
        restore_at in 0..12usize,
        way in any::<u32>(),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut.min(log.len())).collect();
        cuts.push(log.len());
        cuts.sort_unstable();
        let mut reference = Scoreboard::new();
        let (mut fold, mut publisher) = Scoreboard::new().split();
        let mut start = 0;
        let mut kept_resolver = None;
        for (i, &end) in cuts.iter().enumerate() {
            let batch = &log[start..end];
            // The reference publishes after every event: batching must not show.
            let mut expected = reference.snapshot();
            for event in batch {
                reference.apply(event);
                expected = reference.snapshot();
            }
            // Every way of folding a batch, chosen batch by batch, gives the same board: a
            // resolver kept from an earlier batch is out of step once students were added
            // another way or another resolver was made, and its passes are resolved again.
            match (way >> (2 * (i % 16))) & 3 {
                0 => fold.apply_all(batch),
                1 => fold.apply_bulk(batch),
                2 => {
                    let resolver = kept_resolver.get_or_insert_with(|| fold.student_resolver());
                    fold.apply_resolved(&resolver.resolve(batch.to_vec()));
                }
                _ => {
                    let pass = fold.student_resolver().resolve(batch.to_vec());
                    fold.apply_resolved(&pass);
                }
            }
            let published = publisher.publish(fold.take_changes());
            prop_assert_eq!(published.seq(), expected.seq());
            prop_assert_eq!(published.n_results(), expected.n_results());
            prop_assert_eq!(contents(&published), contents(&expected));
            // To the bit, slots included: the checkpoint holds each exam's results in slot order.
            prop_assert_eq!(published.encode_checkpoint(), expected.encode_checkpoint());
            if i == restore_at {
                // As the service does after a restart: resume from a checkpoint of this snapshot.
                let restored = Snapshot::decode_checkpoint(&published.encode_checkpoint())
                    .expect("a checkpoint decodes");
                (fold, publisher) = Scoreboard::from(restored).split();
                kept_resolver = None;
            }
            start = end;
        }
    }

    #[test]
    fn checkpoint_decoding_never_panics(
        log in prop::collection::vec(event(), 0..40),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut bytes = Scoreboard::from_iter(log).snapshot().encode_checkpoint();
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] ^= byte;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = Snapshot::decode_checkpoint(&bytes);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_text(event_type in prop_oneof![Just("score".to_owned()), ".*"], data in ".*") {
        let _ = decode(&event_type, &data);
    }

    #[test]
    fn decode_never_panics_on_json_like_text(
        data in prop::collection::vec(prop_oneof![
            Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"), Just("\""),
            Just("studentId"), Just("exam"), Just("score"), Just("-"), Just("."), Just("1e999"),
            Just("0"), Just("18446744073709551616"), Just("null"), Just("Infinity"), Just("'"),
            Just("\\u0000"), Just(" "),
        ], 0..40).prop_map(|parts| parts.concat())
    ) {
        let _ = decode("score", &data);
    }
}

#[test]
fn snapshots_taken_earlier_do_not_change() {
    let event = |student, exam, score| ScoreEvent::new(student, exam, score).expect("valid");
    let mut board = Scoreboard::new();
    board.apply(&event("a", 1, 0.5));
    let before = board.snapshot();
    let before_contents = contents(&before);
    board.apply(&event("a", 1, 0.9));
    board.apply(&event("b", 2, 0.1));
    let after = board.snapshot();
    assert_eq!(contents(&before), before_contents);
    assert_eq!(before.seq(), 1);
    assert_eq!(after.seq(), 3);
    assert_eq!(after.student("a").expect("known").average, 0.9);
}
