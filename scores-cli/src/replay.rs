//! `scores replay`: fold recorded logs offline and answer exactly as the HTTP API would.
//!
//! The answers come from the same functions the API's handlers call
//! (`scores_core::wire::students_json` and friends) on a snapshot folded from the same events, so
//! they are the same bytes.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs::File;
use std::io::{self, BufWriter, Read, StdoutLock, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::SyncSender;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use scores_core::{Decoded, Page, Resolved, ScoreEvent, Scoreboard, StudentResolver, decode, wire};
use scores_journal::{DataDir, JournalError, Reader, Record, SEGMENT_MAGIC, segment_files};
use scores_pipeline::JetStreamConfig;
use scores_sse::{EventRef, ItemRef, ParseError, Parser};
use serde::Serialize;

use crate::chunks::for_each_chunk;
use crate::cli::{NatsArgs, NatsServers, ReplayArgs};
use crate::live::{RawEvent, stdout_failed, write_json_line};

/// Inputs smaller than this finish before a progress bar would say anything useful.
const PROGRESS_FROM_BYTES: u64 = 8 << 20;

/// What to print after folding.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Query {
    Summary,
    Students,
    Student(String),
    Exams,
    Exam(String),
}

/// Splits `FILE… [QUERY]`: the query is `students`, `exams`, or `student ID` / `exam N` at the
/// end. (A file named like a query word can be given as `./students`.)
fn split_query(args: &[String]) -> (&[String], Query) {
    match args {
        [files @ .., word, value] if word == "student" => (files, Query::Student(value.clone())),
        [files @ .., word, value] if word == "exam" => (files, Query::Exam(value.clone())),
        [files @ .., word] if word == "students" => (files, Query::Students),
        [files @ .., word] if word == "exams" => (files, Query::Exams),
        files => (files, Query::Summary),
    }
}

/// `student` or `exam` as the last word, with nothing after it: a query missing its value.
fn query_missing_its_value(args: &[String]) -> Option<&'static str> {
    match args.last().map(String::as_str) {
        Some("student") => Some("student ID"),
        Some("exam") => Some("exam N"),
        _ => None,
    }
}

/// One input, by what its first bytes (or its being a directory) say it is.
#[derive(Debug)]
enum Input {
    Stdin,
    /// SSE text: a capture or a `scores record` file.
    Sse(PathBuf),
    /// One journal segment file.
    Segment(PathBuf),
    /// A journal directory (a data directory's `journal/`), and its last segment, if any: the
    /// one an append may still be writing.
    Journal(PathBuf, Option<PathBuf>),
    /// A JetStream stream, on these NATS servers.
    Stream(NatsServers),
}

impl Input {
    fn classify(arg: &str) -> anyhow::Result<(Input, u64)> {
        if arg == "-" {
            return Ok((Input::Stdin, 0));
        }
        if arg.starts_with("nats://") || arg.starts_with("tls://") {
            let servers = crate::cli::parse_log(arg).map_err(anyhow::Error::msg)?;
            return Ok((Input::Stream(servers), 0));
        }
        let path = PathBuf::from(arg);
        let metadata = std::fs::metadata(&path).with_context(|| format!("cannot read {arg}"))?;
        if metadata.is_dir() {
            let dir = DataDir::journal_dir_of(&path);
            let segments = segment_files(&dir).with_context(|| format!("cannot list {arg}"))?;
            let size = segments.iter().map(|segment| segment.len).sum();
            return Ok((Input::Journal(dir, segments.last().map(|last| last.path.clone())), size));
        }
        let mut magic = Vec::with_capacity(SEGMENT_MAGIC.len());
        let file = File::open(&path).with_context(|| format!("cannot open {arg}"))?;
        file.take(SEGMENT_MAGIC.len() as u64)
            .read_to_end(&mut magic)
            .with_context(|| format!("reading {arg}"))?;
        let input =
            if magic == SEGMENT_MAGIC[..] { Input::Segment(path) } else { Input::Sse(path) };
        Ok((input, metadata.len()))
    }
}

pub(crate) fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    if let Some(usage) = query_missing_its_value(&args.args) {
        bail!(
            "the query needs its value: `scores replay FILE… {usage}` (a file named so: `./{}`)",
            usage.split(' ').next().unwrap_or_default()
        );
    }
    let (files, query) = split_query(&args.args);
    if files.is_empty() {
        bail!("no input given: name at least one file or directory, or `-` for standard input");
    }
    if args.events && query != Query::Summary {
        bail!("--events prints the events themselves; it takes no query");
    }
    if (args.limit.is_some() || args.after.is_some())
        && !matches!(query, Query::Students | Query::Exams)
    {
        bail!("--limit and --after page the `students` and `exams` queries only");
    }
    let inputs =
        files.iter().map(|arg| Input::classify(arg)).collect::<anyhow::Result<Vec<_>>>()?;
    let total: u64 = inputs.iter().map(|(_, size)| size).sum();
    let reads_stdin = inputs.iter().any(|(input, _)| matches!(input, Input::Stdin));
    let progress = progress_bar(total, reads_stdin);
    crate::logging::show_progress(&progress);

    let mut out = BufWriter::with_capacity(64 << 10, io::stdout().lock());
    let sink = if args.events { Sink::Print(&mut out) } else { Sink::Fold(Box::default()) };
    let mut replay =
        Replay { sink, strict: args.strict, tally: Tally::default(), n_unrecognised: 0, progress };
    for (input, size) in &inputs {
        let done = match input {
            Input::Stdin => replay.sse("<stdin>", io::stdin()),
            Input::Sse(path) => match File::open(path) {
                Ok(file) => replay.sse(&path.display().to_string(), file),
                Err(error) => {
                    let context = format!("cannot open {}", path.display());
                    Err(Stop::Io(anyhow::Error::new(error).context(context)))
                }
            },
            Input::Segment(path) => replay.journal(Reader::open_segment(path), path, *size),
            Input::Journal(dir, None) => replay.unrecognised(&format!(
                "{}: a directory with no journal segments (*.seg) in it",
                dir.display()
            )),
            Input::Journal(dir, Some(last)) => match Reader::open_dir(dir) {
                Ok(reader) => replay.journal(reader, last, *size),
                Err(error) => Err(Stop::Io(error.into())),
            },
            Input::Stream(servers) => replay.stream(servers, &args.nats, &args.stream),
        };
        match done {
            Ok(()) => {}
            Err(Stop::Strict) => {
                replay.progress.finish_and_clear();
                let _ = writeln!(io::stderr(), "stopped at the first bad record (--strict)");
                return Ok(ExitCode::from(1));
            }
            Err(Stop::Io(error)) if is_broken_pipe(&error) => return Ok(ExitCode::SUCCESS),
            Err(Stop::Io(error)) => {
                replay.progress.finish_and_clear();
                return Err(error);
            }
        }
    }
    replay.progress.finish_and_clear();
    let Replay { sink, tally, n_unrecognised, .. } = replay;
    // An input that was not understood fails the command, after what was understood is shown.
    let done = if n_unrecognised > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS };
    let Sink::Fold(mut board) = sink else {
        return out.flush().map_or_else(stdout_failed, |()| Ok(done));
    };
    let snapshot = board.snapshot();
    // An empty `--after` starts at the beginning, as the API's empty `?after=` does.
    let after = args.after.as_deref().filter(|after| !after.is_empty());
    let answer = match query {
        Query::Summary => Ok(tally.summary_json(&snapshot)),
        Query::Students => Ok(wire::students_json(&snapshot, Page { limit: args.limit, after })),
        Query::Student(id) => wire::student_json(&snapshot, &id),
        Query::Exams => after.map(wire::parse_exam_cursor).transpose().map(|after| {
            wire::exams_json(&snapshot, Page { limit: args.limit, after: after.as_ref() })
        }),
        Query::Exam(number) => {
            wire::parse_exam_number(&number).and_then(|exam| wire::exam_json(&snapshot, exam))
        }
    };
    let (body, code) = match answer {
        Ok(body) => (body, done),
        Err(error) => (error.to_json(), ExitCode::from(1)),
    };
    match out.write_all(&body).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()) {
        Ok(()) => Ok(code),
        Err(error) => stdout_failed(error),
    }
}

fn progress_bar(total: u64, reads_stdin: bool) -> ProgressBar {
    if reads_stdin {
        let style =
            ProgressStyle::with_template("{spinner} {binary_bytes} read ({binary_bytes_per_sec})");
        ProgressBar::new_spinner()
            .with_style(style.unwrap_or_else(|_| ProgressStyle::default_spinner()))
    } else if total >= PROGRESS_FROM_BYTES {
        let style = ProgressStyle::with_template(
            "{wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)",
        );
        ProgressBar::new(total).with_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()))
    } else {
        ProgressBar::hidden()
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Where events go: into a board, or straight to stdout (`--events`).
enum Sink<'a> {
    Fold(Box<Scoreboard>),
    Print(&'a mut BufWriter<StdoutLock<'static>>),
}

/// Why reading stopped early.
enum Stop {
    /// A bad record under `--strict` (already reported).
    Strict,
    /// Reading an input or writing stdout failed.
    Io(anyhow::Error),
}

#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    ignored: u64,
    rejected: BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary<'a> {
    accepted: u64,
    rejected: u64,
    rejected_by_reason: &'a BTreeMap<&'static str, u64>,
    ignored: u64,
    students: usize,
    exams: usize,
    results: u64,
}

impl Tally {
    fn summary_json(&self, snapshot: &scores_core::Snapshot) -> Vec<u8> {
        let summary = Summary {
            accepted: self.accepted,
            rejected: self.rejected.values().sum(),
            rejected_by_reason: &self.rejected,
            ignored: self.ignored,
            students: snapshot.n_students(),
            exams: snapshot.n_exams(),
            results: snapshot.n_results(),
        };
        // Integers and short strings: serializing into memory cannot fail.
        serde_json::to_vec(&summary).unwrap_or_default()
    }
}

struct Replay<'a> {
    sink: Sink<'a>,
    strict: bool,
    tally: Tally,
    /// Inputs that were neither SSE text nor a journal.
    n_unrecognised: u64,
    progress: ProgressBar,
}

impl Replay<'_> {
    /// Folds `events` (emptying it) and counts them accepted.
    fn fold(&mut self, events: &mut Vec<ScoreEvent>) {
        if let Sink::Fold(board) = &mut self.sink {
            if events.len() >= BULK_FROM {
                board.apply_bulk(events);
            } else {
                board.apply_all(events.iter());
            }
        }
        self.tally.accepted += events.len() as u64;
        events.clear();
    }

    /// Reads SSE text from `reader` to its end, as one stream.
    fn sse(&mut self, name: &str, reader: impl Read + Send) -> Result<(), Stop> {
        match &mut self.sink {
            Sink::Print(_) => self.print_sse(name, reader),
            Sink::Fold(_) => self.fold_sse(name, reader),
        }
    }

    /// Folds SSE text on two threads: one reads, parses and decodes, this one folds.
    fn fold_sse(&mut self, name: &str, reader: impl Read + Send) -> Result<(), Stop> {
        std::thread::scope(|scope| {
            let (sender, batches) = std::sync::mpsc::sync_channel(SSE_BATCHES_AHEAD);
            let progress = self.progress.clone();
            let decoding = scope.spawn(move || decode_sse(name, reader, &progress, &sender));
            // Returning early drops `batches`, and the decoding thread stops at its next send.
            // Events are folded together in passes: what is ignored or rejected between them
            // changes no answer, and a `--strict` stop shows no answer.
            let mut events = Vec::new();
            for batch in &batches {
                for outcome in batch.map_err(Stop::Io)? {
                    match outcome {
                        Outcome::Event(event) => events.push(event),
                        Outcome::Ignored => self.tally.ignored += 1,
                        Outcome::Bad { reason, message } => self.bad(reason, &message)?,
                    }
                }
                if events.len() >= FOLD_PASS {
                    self.fold(&mut events);
                }
            }
            self.fold(&mut events);
            drop(batches);
            // The decoding thread only parses and sends; a panic there is a bug to surface.
            let (n_unknown_fields, n_events) = match decoding.join() {
                Ok(counts) => counts,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            self.check_sse(name, n_unknown_fields, n_events)
        })
    }

    /// Prints SSE text's events as JSON lines.
    fn print_sse(&mut self, name: &str, reader: impl Read) -> Result<(), Stop> {
        let mut parser = Parser::default();
        let mut n_events = 0;
        let flow = for_each_chunk(reader, |chunk| {
            self.progress.inc(chunk.len() as u64);
            let mut stopped = Ok(());
            parser.feed_with(chunk, |item| {
                if stopped.is_ok() {
                    stopped = match item {
                        Ok(ItemRef::Event(event)) => {
                            n_events += 1;
                            self.sse_event(event)
                        }
                        Ok(ItemRef::Retry(_) | ItemRef::Comment(_)) => Ok(()),
                        Err(error) => self.bad(error.reason(), &at_line(name, &error)),
                    };
                }
            });
            match stopped {
                Ok(()) => ControlFlow::Continue(()),
                Err(stop) => ControlFlow::Break(stop),
            }
        });
        match flow {
            Ok(ControlFlow::Continue(())) => {
                self.check_sse(name, parser.n_unknown_fields(), n_events)
            }
            Ok(ControlFlow::Break(stop)) => Err(stop),
            Err(error) => {
                Err(Stop::Io(anyhow::Error::new(error).context(format!("reading {name}"))))
            }
        }
    }

    fn sse_event(&mut self, event: EventRef<'_>) -> Result<(), Stop> {
        let Sink::Print(out) = &mut self.sink else { return Ok(()) };
        let raw = RawEvent { event: event.event_type, data: event.data, id: event.id };
        write_json_line(*out, &raw).map_err(|e| Stop::Io(e.into()))
    }

    /// Reads journal records: already validated events, checked against their checksums. An
    /// unfinished batch at the end of `last_segment` is an append still being written (or cut
    /// by a crash, which the journal itself cuts off on open): not part of the log, not damage.
    /// The records are read and checked on a thread of their own, and folded (or printed) here.
    fn journal(&mut self, reader: Reader, last_segment: &Path, size: u64) -> Result<(), Stop> {
        let done = match self.sink {
            Sink::Fold(_) => self.fold_journal(reader, last_segment),
            Sink::Print(_) => self.print_journal(reader, last_segment),
        };
        self.progress.inc(size);
        done
    }

    /// Folds a journal in passes of up to [`FOLD_PASS`] events (see
    /// [`Scoreboard::apply_resolved`]): the reading thread reads, checks and resolves the next
    /// pass's students while this one folds the last.
    fn fold_journal(&mut self, reader: Reader, last_segment: &Path) -> Result<(), Stop> {
        let Sink::Fold(board) = &mut self.sink else { return Ok(()) };
        let resolver = board.student_resolver();
        std::thread::scope(|scope| {
            let (sender, passes) = std::sync::mpsc::sync_channel(1);
            // Returning early drops `passes`, and the reading thread stops at its next send.
            scope.spawn(move || read_passes(reader, resolver, &sender));
            for pass in &passes {
                match pass {
                    JournalPass::Events(pass) => {
                        if let Sink::Fold(board) = &mut self.sink {
                            board.apply_resolved(&pass);
                        }
                        self.tally.accepted += pass.events().len() as u64;
                    }
                    JournalPass::Failed(error) => self.journal_error(error, last_segment)?,
                }
            }
            Ok(())
        })
    }

    /// Prints a journal's events (`--events`).
    fn print_journal(&mut self, reader: Reader, last_segment: &Path) -> Result<(), Stop> {
        std::thread::scope(|scope| {
            let (sender, batches) = std::sync::mpsc::sync_channel(4);
            scope.spawn(move || read_journal(reader, &sender));
            let mut data = Vec::new();
            for batch in &batches {
                for record in batch {
                    match record {
                        Ok(record) => self.print(&record.event, &record.upstream_id, &mut data)?,
                        Err(error) => self.journal_error(error, last_segment)?,
                    }
                }
            }
            Ok(())
        })
    }

    /// Reports what stopped a journal's reader: an unfinished append at the end of the last
    /// segment is noted, damage is a bad record, and a read that failed stops the replay.
    fn journal_error(&mut self, error: JournalError, last_segment: &Path) -> Result<(), Stop> {
        match error {
            error @ JournalError::Io { .. } => Err(Stop::Io(error.into())),
            JournalError::TornTail { segment, offset } if segment == last_segment => {
                self.note(&format!(
                    "{}: an append is unfinished at byte {offset} (a writer still at work, or a \
                     crash); read up to it",
                    segment.display()
                ));
                Ok(())
            }
            error => self.bad("corrupt_journal", &error),
        }
    }

    /// Folds (or prints) a JetStream stream, from its first event to its last at the time.
    fn stream(&mut self, servers: &NatsServers, nats: &NatsArgs, stream: &str) -> Result<(), Stop> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|error| Stop::Io(error.into()))?;
        let (auth, tls) = nats.resolve(servers).map_err(Stop::Io)?;
        let config = JetStreamConfig {
            stream: stream.to_owned(),
            auth,
            tls,
            ..JetStreamConfig::new(servers.servers.clone())
        };
        let context = || format!("cannot read stream {stream} on {}", servers.servers.join(","));
        let (reader, last) = runtime
            .block_on(scores_pipeline::open_reader(config))
            .map_err(|error| Stop::Io(anyhow::Error::new(error).context(context())))?;
        let mut cursor = reader.cursor(1);
        let mut data = Vec::new();
        let (mut read, mut events) = (0, Vec::new());
        while read < last {
            let records = cursor
                .read(65_536)
                .map_err(|error| Stop::Io(anyhow::Error::new(error).context(context())))?;
            if records.is_empty() {
                break;
            }
            for record in records.into_iter().take_while(|record| record.seq <= last) {
                read = record.seq;
                match self.sink {
                    Sink::Fold(_) => events.push(record.event),
                    Sink::Print(_) => self.print(&record.event, &record.upstream_id, &mut data)?,
                }
            }
            if events.len() >= FOLD_PASS {
                self.fold(&mut events);
            }
        }
        self.fold(&mut events);
        Ok(())
    }

    /// Prints a stored event as a JSON line (`--events`), with `data` as scratch space.
    fn print(
        &mut self,
        event: &ScoreEvent,
        upstream_id: &str,
        data: &mut Vec<u8>,
    ) -> Result<(), Stop> {
        let Sink::Print(out) = &mut self.sink else { return Ok(()) };
        data.clear();
        serde_json::to_writer(&mut *data, event).map_err(|e| Stop::Io(e.into()))?;
        let data = String::from_utf8_lossy(data);
        let raw = RawEvent { event: "score", data: &data, id: upstream_id };
        write_json_line(*out, &raw).map_err(|e| Stop::Io(e.into()))
    }

    /// Reports an input that is not what replay reads; under `--strict`, stops.
    fn unrecognised(&mut self, message: &str) -> Result<(), Stop> {
        self.n_unrecognised += 1;
        self.note(&format!("{message}; skipped"));
        if self.strict { Err(Stop::Strict) } else { Ok(()) }
    }

    /// After SSE input `name` is read: text in which no line was an SSE field is not SSE text;
    /// lines that are not fields beside events are ignored, as SSE says, except under `--strict`.
    fn check_sse(&mut self, name: &str, n_unknown_fields: u64, n_events: u64) -> Result<(), Stop> {
        if n_unknown_fields == 0 {
            return Ok(());
        }
        let lines = if n_unknown_fields == 1 { "line names" } else { "lines name" };
        if n_events == 0 {
            return self.unrecognised(&format!(
                "{name}: neither SSE text (no event in it, and {n_unknown_fields} {lines} no SSE \
                 field) nor a journal segment"
            ));
        }
        let message = format!(
            "{name}: {n_unknown_fields} {lines} no SSE field (event, data, id, retry, or a `:` \
             comment)"
        );
        if self.strict {
            return self.unrecognised(&message);
        }
        self.note(&format!("{message}; ignored"));
        Ok(())
    }

    /// A line on stderr, around the progress bar.
    fn note(&self, message: &str) {
        // A closed stderr stops nothing.
        self.progress.suspend(|| writeln!(io::stderr(), "{message}")).ok();
    }

    /// Reports a bad record on stderr and counts it; under `--strict`, stops.
    fn bad(&mut self, reason: &'static str, message: &dyn Display) -> Result<(), Stop> {
        *self.tally.rejected.entry(reason).or_default() += 1;
        // Reporting bad records on stderr is this command's job; a closed stderr stops nothing.
        self.progress.suspend(|| writeln!(io::stderr(), "{message}")).ok();
        if self.strict { Err(Stop::Strict) } else { Ok(()) }
    }
}

/// What one SSE event (or one dropped by the parser) comes to.
enum Outcome {
    Event(ScoreEvent),
    Ignored,
    Bad { reason: &'static str, message: String },
}

/// Reads, parses and decodes SSE text, sending one batch of outcomes per chunk read, until the
/// end of the input or until the receiver hangs up. Returns how many lines named no SSE field,
/// and how many events there were.
fn decode_sse(
    name: &str,
    reader: impl Read,
    progress: &ProgressBar,
    batches: &SyncSender<Result<Vec<Outcome>, anyhow::Error>>,
) -> (u64, u64) {
    let mut parser = Parser::default();
    let mut n_events = 0;
    let read = for_each_chunk(reader, |chunk| {
        progress.inc(chunk.len() as u64);
        let mut batch = Vec::with_capacity(chunk.len() / 64);
        parser.feed_with(chunk, |item| {
            batch.push(match item {
                Ok(ItemRef::Event(event)) if !event.data_is_utf8 => {
                    n_events += 1;
                    Outcome::Bad {
                        reason: "not_utf8",
                        message: format!("{name}:{}: rejected: its data is not UTF-8", event.line),
                    }
                }
                Ok(ItemRef::Event(event)) => {
                    n_events += 1;
                    match decode(event.event_type, event.data) {
                        Ok(Decoded::Event(event)) => Outcome::Event(event),
                        Ok(Decoded::Ignored) => Outcome::Ignored,
                        Err(error) => Outcome::Bad {
                            reason: error.reason(),
                            message: format!("{name}:{}: rejected: {error}", event.line),
                        },
                    }
                }
                Ok(ItemRef::Retry(_) | ItemRef::Comment(_)) => return,
                Err(error) => {
                    Outcome::Bad { reason: error.reason(), message: at_line(name, &error) }
                }
            });
        });
        // A send fails when the folding side has stopped: then stop reading too.
        match batches.send(Ok(batch)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    });
    if let Err(error) = read {
        let _ = batches.send(Err(anyhow::Error::new(error).context(format!("reading {name}"))));
    }
    (parser.n_unknown_fields(), n_events)
}

/// From this many events on, a fold goes in bulk (a replay publishes once, at the end, so
/// the exams' rebuild that follows a bulk fold is paid once).
const BULK_FROM: usize = 1 << 16;

/// Records read at a time from a journal, and handed over to be folded together.
const JOURNAL_BATCH: usize = 65_536;

/// What the reading thread of [`Replay::fold_journal`] hands over.
enum JournalPass {
    /// The next events, resolved.
    Events(Resolved),
    /// What ended the reading, after the events before it.
    Failed(JournalError),
}

/// Reads `reader` to its end in passes of up to [`FOLD_PASS`] events, resolved by `resolver`,
/// until the receiver hangs up.
fn read_passes(reader: Reader, mut resolver: StudentResolver, passes: &SyncSender<JournalPass>) {
    let mut events = Vec::with_capacity(FOLD_PASS);
    for record in reader {
        match record {
            Ok(record) => events.push(record.event),
            Err(error) => {
                let pass = resolver.resolve(std::mem::take(&mut events));
                let _ = passes.send(JournalPass::Events(pass));
                let _ = passes.send(JournalPass::Failed(error));
                return;
            }
        }
        if events.len() == FOLD_PASS {
            let full = std::mem::replace(&mut events, Vec::with_capacity(FOLD_PASS));
            if passes.send(JournalPass::Events(resolver.resolve(full))).is_err() {
                return;
            }
        }
    }
    let _ = passes.send(JournalPass::Events(resolver.resolve(events)));
}

/// Batches of SSE events (one per chunk read, some 10k events) that can wait to be folded: about
/// a pass, so the decoding thread goes on while the pass before is folded.
const SSE_BATCHES_AHEAD: usize = 96;

/// Events folded together in one pass: each student's results are read once a pass, so a
/// pass is best many times larger than the board's students (and its scratch stays ~100 MB).
const FOLD_PASS: usize = 1 << 20;

/// Reads `reader` to its end in batches of records (and the errors among them, in place),
/// until the receiver hangs up.
fn read_journal(reader: Reader, batches: &SyncSender<Vec<Result<Record, JournalError>>>) {
    let mut batch = Vec::with_capacity(JOURNAL_BATCH);
    for record in reader {
        batch.push(record);
        if batch.len() == JOURNAL_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(JOURNAL_BATCH));
            if batches.send(full).is_err() {
                return;
            }
        }
    }
    let _ = batches.send(batch);
}

fn at_line(name: &str, error: &ParseError) -> String {
    format!("{name}:{}: dropped: {error}", error.line())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(args: &[&str]) -> (Vec<String>, Query) {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let (files, query) = split_query(&args);
        (files.to_vec(), query)
    }

    #[test]
    fn queries_are_read_from_the_end() {
        assert_eq!(split(&["a", "b"]), (vec!["a".to_owned(), "b".to_owned()], Query::Summary));
        assert_eq!(split(&["a", "students"]), (vec!["a".to_owned()], Query::Students));
        assert_eq!(
            split(&["a", "b", "exams"]),
            (vec!["a".to_owned(), "b".to_owned()], Query::Exams)
        );
        assert_eq!(
            split(&["a", "student", "Marvin32"]),
            (vec!["a".to_owned()], Query::Student("Marvin32".into()))
        );
        assert_eq!(
            split(&["a", "exam", "11295"]),
            (vec!["a".to_owned()], Query::Exam("11295".into()))
        );
        assert_eq!(split(&["students", "exams"]), (vec!["students".to_owned()], Query::Exams));
        assert_eq!(split(&["students"]), (Vec::new(), Query::Students));
    }
}
