//! Resuming an interrupted evaluation ([`gram::eval::Journal`]): a run stopped part-way and
//! continued from its journal judges each pair once and scores exactly as one run; the journal
//! refuses another run's inputs, survives a line cut short by a kill, and is never overwritten
//! by accident. `gram eval` interrupted by Ctrl-C and resumed with `--resume` writes the report
//! of a run never interrupted.

mod common;

use gram::data::{self, Format, Record};
use gram::eval::{self, EvalOptions, Journal};
use gram::{Judge, Pair, Verdict};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A verdict that depends only on the pair (so any split into calls gives the same ones):
/// P(A) from the responses' lengths, a little position bias, distinct in both orders.
fn verdict_on(pair: &Pair) -> Verdict {
    let (a, b) = (pair.response_a.len() as f64, pair.response_b.len() as f64);
    let forward = 1.0 / (1.0 + (-(a - b) / 50.0 - 0.1).exp());
    let reverse = 1.0 / (1.0 + (-(a - b) / 50.0 + 0.1).exp());
    Verdict {
        p_a: 0.5 * (forward + reverse),
        p_a_forward: forward,
        p_a_reverse: reverse,
    }
}

/// Judges by [`verdict_on`] and records every pair it was asked about.
#[derive(Default)]
struct CountingJudge {
    seen: Vec<String>,
}

impl Judge for CountingJudge {
    fn judge(&mut self, pairs: &[Pair]) -> gram::Result<Vec<Verdict>> {
        self.seen.extend(pairs.iter().map(|p| p.prompt.clone()));
        Ok(pairs.iter().map(verdict_on).collect())
    }
}

/// `n` labeled preference rows with distinct prompts and responses of varied lengths.
fn records(dir: &Path, n: usize) -> Vec<Record> {
    let path = dir.join("bench.jsonl");
    let text: String = (0..n)
        .map(|i| {
            let row = json!({
                "prompt": format!("question {i}"),
                "chosen": "yes ".repeat(1 + (7 * i) % 23),
                "rejected": "no ".repeat(1 + (11 * i) % 19),
            });
            format!("{row}\n")
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    data::read_preferences(&path, Format::Preference).unwrap()
}

fn options() -> EvalOptions {
    EvalOptions {
        chunk: 3,
        ..EvalOptions::default()
    }
}

fn inputs() -> serde_json::Value {
    json!({"benchmark": ["bench.jsonl"], "limit": null, "rows": [0, 10]})
}

#[test]
fn a_stopped_evaluation_resumed_from_its_journal_scores_as_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let records = records(dir.path(), 10);
    let scorer = eval::scorer_for(Format::Preference);
    let straight =
        eval::evaluate(&mut CountingJudge::default(), &records, scorer, &options()).unwrap();

    // Stopped after its second call (3 + 3 records), each call journaled.
    let path = Journal::path_for(&dir.path().join("report.json"));
    let mut journal = Journal::create(&path, &inputs(), 0).unwrap();
    let mut calls = 0;
    let mut first = CountingJudge::default();
    let partial = eval::judge_records_after(
        &mut first,
        &records,
        scorer,
        &options(),
        Vec::new(),
        |new| {
            journal.append(new)?;
            calls += 1;
            Ok(calls < 2)
        },
    )
    .unwrap();
    assert_eq!(partial.len(), 6);
    drop(journal);

    let (mut journal, done) = Journal::resume(&path, &inputs(), 0).unwrap();
    assert_eq!(
        done, partial,
        "the journal gives back the verdicts it was given"
    );
    let mut second = CountingJudge::default();
    let verdicts =
        eval::judge_records_after(&mut second, &records, scorer, &options(), done, |new| {
            journal.append(new)?;
            Ok(true)
        })
        .unwrap();
    // Each pair judged once over the two runs: the resumed run only the last four rows.
    let prompts = |from: usize, to: usize| -> Vec<String> {
        (from..to).map(|i| format!("question {i}")).collect()
    };
    assert_eq!(first.seen, prompts(0, 6));
    assert_eq!(second.seen, prompts(6, 10));
    let resumed = eval::score(&records, &verdicts, scorer, &options()).unwrap();
    assert_eq!(resumed, straight);
    journal.finish().unwrap();
    assert!(!path.exists(), "a finished run's journal is removed");
}

#[test]
fn a_journal_is_never_overwritten_nor_resumed_by_another_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = Journal::path_for(&dir.path().join("report.json"));
    assert_eq!(path, dir.path().join("report.json.journal.jsonl"));

    let missing = Journal::resume(&path, &inputs(), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("start without --resume"), "{missing}");

    let mut journal = Journal::create(&path, &inputs(), 0).unwrap();
    journal
        .append(&[vec![verdict_on(&pair("ab", "a"))]])
        .unwrap();
    drop(journal);
    let again = Journal::create(&path, &inputs(), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        again.contains("interrupted run") && again.contains("--resume"),
        "{again}"
    );

    let mut other = inputs();
    other["limit"] = json!(5);
    let refused = Journal::resume(&path, &other, 0).err().unwrap().to_string();
    assert!(
        refused.contains("`limit` (null → 5)") && refused.contains("journal.jsonl"),
        "{refused}"
    );
    // Refusals leave the journal as it was.
    let (_, done) = Journal::resume(&path, &inputs(), 0).unwrap();
    assert_eq!(done.len(), 1);
    // A journal of rows 0.. read as the slice starting at row 4 is refused by row number.
    let mut shifted = Journal::resume(&path, &inputs(), 4)
        .err()
        .unwrap()
        .to_string();
    shifted.truncate(400);
    assert!(
        shifted.contains("row 0 where row 4 was expected"),
        "{shifted}"
    );
}

fn pair(a: &str, b: &str) -> Pair {
    Pair {
        prompt: "q".into(),
        response_a: a.into(),
        response_b: b.into(),
    }
}

#[test]
fn a_line_cut_short_by_a_kill_is_dropped_and_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eval.journal.jsonl");
    let rows: Vec<Vec<Verdict>> = ["a", "abc", "abcdef"]
        .iter()
        .map(|a| vec![verdict_on(&pair(a, "ab")), verdict_on(&pair("ab", a))])
        .collect();
    let mut journal = Journal::create(&path, &inputs(), 0).unwrap();
    journal.append(&rows[..2]).unwrap();
    drop(journal);
    // A kill in the middle of writing the third row.
    let whole = std::fs::read_to_string(&path).unwrap();
    let cut = format!("{whole}{{\"row\": 2, \"verdicts\": [[\"0.5");
    std::fs::write(&path, cut).unwrap();

    let (mut journal, done) = Journal::resume(&path, &inputs(), 0).unwrap();
    assert_eq!(done, rows[..2]);
    journal.append(&rows[2..]).unwrap();
    drop(journal);
    let (_, done) = Journal::resume(&path, &inputs(), 0).unwrap();
    assert_eq!(done, rows, "bit for bit, the cut line replaced");
    // The header and one line per row, nothing of the cut line left.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.ends_with('\n'));
}

// ---- gram eval ------------------------------------------------------------------------------

/// The four shortest rows of `examples/pairs.jsonl`, three times over (12 rows, 3 calls of 4
/// pairs on the CPU), as a preference file in `dir`.
fn pairs_file(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pairs.jsonl"))
            .unwrap();
    let short = [
        "helpful-base-11",
        "helpful-base-6",
        "helpful-base-18",
        "helpful-base-19",
    ];
    let mut rows = String::new();
    for round in 0..3 {
        for line in text.lines() {
            let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
            if short.contains(&row["id"].as_str().unwrap()) {
                row["id"] = json!(format!("{}-{round}", row["id"].as_str().unwrap()));
                rows += &format!("{row}\n");
            }
        }
    }
    assert_eq!(rows.lines().count(), 12);
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, rows).unwrap();
    path
}

fn eval_command(data: &Path, report: &Path, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gram"));
    command
        .args(["eval", "--device", "cpu", "--format", "preference"])
        .arg("--model")
        .arg(common::model_path())
        .arg("--benchmark")
        .arg(data)
        .arg("--report")
        .arg(report);
    if resume {
        command.arg("--resume");
    }
    command
}

fn run(mut command: Command) -> (bool, String) {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}

#[test]
fn gram_eval_interrupted_then_resumed_writes_the_uninterrupted_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = pairs_file(dir.path());
    let report = dir.path().join("report.json");
    let journal = Journal::path_for(&report);

    // Ctrl-C once the first call's verdicts are in the journal.
    let journaled =
        || std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count().saturating_sub(1));
    let stderr =
        common::interrupt_when(&mut eval_command(&data, &report, false), || journaled() > 0);
    let rows = journaled();
    assert!((4..12).contains(&rows), "{rows} rows journaled:\n{stderr}");
    assert!(
        stderr.contains(&format!("interrupted after {rows} of 12 rows"))
            && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(!report.exists(), "no report from an interrupted run");

    // Run again without --resume: refused, the journal kept.
    let (ok, stderr) = run(eval_command(&data, &report, false));
    assert!(!ok && stderr.contains("--resume"), "{stderr}");
    assert_eq!(journaled(), rows);

    let (ok, stderr) = run(eval_command(&data, &report, true));
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("{rows} of 12 rows judged already")),
        "{stderr}"
    );
    assert!(
        !journal.exists(),
        "the journal is removed with the report written"
    );

    let straight = dir.path().join("straight.json");
    let (ok, stderr) = run(eval_command(&data, &straight, false));
    assert!(ok, "{stderr}");
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    assert_eq!(read(&report), read(&straight));
}
