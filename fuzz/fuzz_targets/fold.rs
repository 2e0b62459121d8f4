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
    assert_eq!(restored.students(Page::ALL), snapshot.students(Page::ALL));
    // The listing of ids and the listing of students agree.
    let ids = snapshot.students(Page::ALL).items;
    assert!(snapshot.student_ids_after(None).eq(ids.iter().map(StudentId::as_str)));
    assert!(restored.student_ids_after(None).eq(ids.iter().map(StudentId::as_str)));
    assert_eq!(restored.exams(Page::ALL), snapshot.exams(Page::ALL));
    for id in snapshot.students(Page::ALL).items {
        let (a, b) = (snapshot.student(id.as_str()).expect("listed"), restored.student(id.as_str()).expect("listed"));
        assert!(a.results().eq(b.results()));
        assert!(a.average == b.average || (a.average - b.average).abs() <= 1e-15 * a.average.abs());
    }
});
