//! Folding any events, publishing at any points, must not panic, and a checkpoint of the result
//! must decode to a board that answers the same. Both list the same ids either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scores_core::{ExamId, Page, Score, ScoreEvent, Scoreboard, Snapshot, StudentId};

fuzz_target!(|steps: Vec<(u8, u16, u64, bool)>| {
    let mut board = Scoreboard::new();
    for (student, exam, score_bits, publish) in steps {
        let Ok(score) = Score::new(f64::from_bits(score_bits)) else { continue };
        let Ok(student_id) = StudentId::new(&format!("s{student}")) else { continue };
        board.apply(&ScoreEvent { student_id, exam: ExamId(u64::from(exam)), score });
        if publish {
            board.snapshot();
        }
    }
    let snapshot = board.snapshot();
    let restored = Snapshot::decode_checkpoint(&snapshot.encode_checkpoint()).expect("own checkpoint decodes");
    let ids: Vec<&str> = snapshot.students(Page::ALL).collect();
    assert!(restored.students(Page::ALL).eq(ids.iter().copied()));
    assert!(restored.exams(Page::ALL).eq(snapshot.exams(Page::ALL)));
    // Paging through the list, a few at a time, lists every id once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let mut page = snapshot.students(Page { limit: Some(3), after });
        paged.extend(page.by_ref());
        match page.next_cursor() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, ids);
    for id in ids {
        let (a, b) = (snapshot.student(id).expect("listed"), restored.student(id).expect("listed"));
        assert!(a.results().eq(b.results()));
        assert!(a.average == b.average || (a.average - b.average).abs() <= 1e-15 * a.average.abs());
    }
});
