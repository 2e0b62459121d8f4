//! A deterministic, realistic event workload for the benchmarks.
//!
//! Faker-style student ids drawn from `n_students`; exams are 5-digit numbers that advance every
//! `results_per_exam` events, as exams do in the feed; about 1% of events regrade a result of a
//! recent exam.

use scores_core::{ExamId, Score, ScoreEvent, StudentId};

const FIRST: [&str; 16] = [
    "Marvin", "Susana", "Hannah", "Gretchen", "Otto", "Lavina", "Kaden", "Ruthie", "Cleve",
    "Brisa", "Tomas", "Zella", "Amos", "Ilene", "Jaunita", "Ward",
];
const LAST: [&str; 16] = [
    "Langworth",
    "Herman",
    "Mayert",
    "Kuhn",
    "Bartell",
    "Schowalter",
    "Gleason",
    "Hilll",
    "Okuneva",
    "Runolfsdottir",
    "Wiza",
    "Ziemann",
    "Pfannerstill",
    "Kautzer",
    "Rau",
    "Dach",
];

/// SplitMix64: tiny, fast, and the same on every machine.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A faker-style name, distinct for each index: the first name and the number say which. (Until
/// 2026-12-02 the number was `index / 256`, so that 100k indices named only 72,922 students.)
pub(crate) fn student_name(index: u64) -> String {
    let first = FIRST[(index % 16) as usize];
    let k = index / 16;
    let last = LAST[(k % 16) as usize];
    match index % 3 {
        0 => format!("{first}{k}"),
        1 => format!("{first}_{last}{k}"),
        _ => format!("{first}.{last}{k}"),
    }
}

pub(crate) fn events(
    n_events: usize,
    n_students: u64,
    results_per_exam: u64,
    seed: u64,
) -> Vec<ScoreEvent> {
    generate(n_events, n_students, seed, |i, rng| {
        let current_exam = 10_000 + i / results_per_exam;
        if rng.below(100) == 0 {
            ExamId(current_exam.saturating_sub(rng.below(5)).max(10_000))
        } else {
            ExamId(current_exam)
        }
    })
}

/// Events as `scores simulate` sends them: bursts of `burst` events share an exam drawn from
/// `n_exams`, each event's student drawn from `n_students`. Unlike [`events`], exams recur, so
/// with many students each exam's results keep growing.
#[allow(dead_code, reason = "the memory bench does not use it")]
pub(crate) fn simulated(
    n_events: usize,
    n_students: u64,
    n_exams: u64,
    burst: u64,
    seed: u64,
) -> Vec<ScoreEvent> {
    let mut exam = ExamId(10_000);
    generate(n_events, n_students, seed, |i, rng| {
        if i % burst == 0 {
            exam = ExamId(10_000 + rng.below(n_exams));
        }
        exam
    })
}

/// `n_events` events, the i-th on `exam_of(i)`, each by a student drawn from `n_students`
/// with a score drawn uniformly.
fn generate(
    n_events: usize,
    n_students: u64,
    seed: u64,
    mut exam_of: impl FnMut(u64, &mut Rng) -> ExamId,
) -> Vec<ScoreEvent> {
    let students: Vec<StudentId> =
        (0..n_students).map(|i| StudentId::new(&student_name(i)).expect("valid name")).collect();
    let mut rng = Rng::new(seed);
    (0..n_events as u64)
        .map(|i| ScoreEvent {
            exam: exam_of(i, &mut rng),
            student_id: students[rng.below(n_students) as usize].clone(),
            score: Score::new(rng.unit()).expect("in range"),
        })
        .collect()
}
